// Package auth knows who a customer is and what they asked for.
//
// It holds these things:
//
//   - the username grammar (ParseUsername, Target): a customer writes their
//     targeting into the proxy username, USER[-key-value]..., with the keys
//     zone, country, city, dc, session and sesstime;
//   - customers (Customer) and the Authenticator interface the gateway depends
//     on to check a user name and password;
//   - credential stores behind Authenticator and Admin: FileStore, the YAML
//     file used by a single gateway and the demo, and RedisStore, shared by
//     every gateway (pub/sub invalidation, fail-static while Redis is down);
//     failed logins are throttled per client address, and per client
//     address and user name, never per user name alone (ErrLoginThrottled);
//   - limits (MemoryLimiter, RedisLimiter: concurrent tunnels and request
//     rate, both checked by one Admit call) and usage (Meter: bytes per
//     customer, pool, day and month; monthly quota), each in a memory
//     variant for one gateway and a Redis variant for many.
//
// Passwords are stored as argon2id PHC strings (HashPassword), bcrypt hashes
// are accepted on import (VerifyPassword), and plaintext passwords are allowed
// in a file for demos. Because hashing is slow on purpose, a verified
// (user, password) pair is remembered for a short time under a keyed hash of
// the pair, never the password itself; that cache-hit path allocates nothing.
//
// auth is not the place for exit selection, sticky-session bindings or HTTP
// status codes: callers branch on the sentinel errors (ErrBadParams,
// ErrBadCredentials, ErrStoreUnavailable, ErrLoginThrottled,
// ErrTooManyConnections, ErrRateLimited) and map them to what the customer
// sees. auth imports no other package of this module.
package auth
