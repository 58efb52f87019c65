package pool

// HRWWinner returns which of ids rendezvous hashing gives the session of
// customer and session, with every id pickable: the same function sticky
// picks use.
func HRWWinner(ids []string, customer, session string) string {
	ms := make([]*member, len(ids))
	for i, id := range ids {
		ms[i] = &member{exit: &Exit{ID: id}, st: newExitState(), idHash: hashString(id)}
	}
	f := filter{now: func() int64 { return 1 }}
	m := hrw(ms, &f, hashString(sessionKey(customer, session)))
	if m == nil {
		return ""
	}
	return m.exit.ID
}
