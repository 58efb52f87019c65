package auth

// cached reports whether (user, password) would be answered from the cache.
func (s *FileStore) cached(user, password string) bool {
	_, st := s.cache.get(s.mac.pair(user, password), s.cfg.Now())
	return st == cacheFresh
}

// cacheLen returns the number of cache entries, expired or not.
func (s *FileStore) cacheLen() int { return s.cache.len() }

// newTestMacer exposes newMacerKey to compare it with crypto/hmac.
var newTestMacer = newMacerKey

// subscribed returns how many times s has (re)subscribed to invalidations.
func (s *RedisStore) subscribed() int64 { return s.subscriptions.Load() }
