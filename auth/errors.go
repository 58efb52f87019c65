package auth

import "errors"

var (
	// ErrBadParams means the targeting in a proxy username is malformed: an
	// unknown key, a bad value, a duplicate key, a key without a value or an
	// empty part. The gateway answers 400 bad_params.
	ErrBadParams = errors.New("bad_params")

	// ErrBadCredentials means a user name and password were not accepted: an
	// unknown user, a wrong password, a disabled or expired customer, a
	// client address outside the customer's allowlist, or a user name that
	// cannot be one (it breaks the user rule of the grammar).
	// The gateway answers 407.
	ErrBadCredentials = errors.New("bad credentials")

	// ErrStoreUnavailable means the shared store (Redis) could not be
	// reached in time and the answer was not in the cache. The gateway
	// answers 503.
	ErrStoreUnavailable = errors.New("customer store unavailable")

	// ErrLoginThrottled means too many failed logins came recently from
	// the client address, for this user name or for any; the password was
	// not checked. The gateway answers 429 rate_limited.
	ErrLoginThrottled = errors.New("too many failed logins")

	// ErrTooManyConnections means a new tunnel would exceed the customer's
	// MaxConns. The gateway answers 429 too_many_connections.
	ErrTooManyConnections = errors.New("too_many_connections")

	// ErrRateLimited means a request exceeds the customer's request rate.
	// The gateway answers 429 rate_limited with Retry-After.
	ErrRateLimited = errors.New("rate_limited")

	// ErrQuotaExceeded means the customer has used their monthly bandwidth
	// quota. The gateway answers 402 quota_exceeded. (Meter.OverQuota
	// reports it as a bool; this is for callers that want an error.)
	ErrQuotaExceeded = errors.New("quota_exceeded")

	// ErrCustomerExists means Admin.Put with create found the user already
	// there.
	ErrCustomerExists = errors.New("customer already exists")

	// ErrUnknownCustomer means Admin found no customer of that name.
	ErrUnknownCustomer = errors.New("unknown customer")

	// ErrInvalidCustomer is wrapped by every validation error of a
	// CustomerRecord (a *FieldError names the field).
	ErrInvalidCustomer = errors.New("invalid customer")
)

// FieldError is a CustomerRecord validation error: the field that is
// wrong (e.g. "allow_ips[1]") and what is wrong with it. It matches
// ErrInvalidCustomer with errors.Is.
type FieldError struct {
	Field string // e.g. "pools[0]"; "" for the record as a whole
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalidCustomer) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidCustomer }
