package auth

// cached reports whether (user, password) would be answered from the cache.
func (s *FileStore) cached(user, password string) bool {
	_, ok := s.cache.get(s.mac.pair(user, password), s.cfg.Now())
	return ok
}

// cacheLen returns the number of cache entries, expired or not.
func (s *FileStore) cacheLen() int { return s.cache.len() }

// newTestMacer exposes newMacerKey to compare it with crypto/hmac.
var newTestMacer = newMacerKey
