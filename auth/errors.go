package auth

import "errors"

var (
	// ErrBadParams means the targeting in a proxy username is malformed: an
	// unknown key, a bad value, a duplicate key, a key without a value or an
	// empty part. The gateway answers 400 bad_params.
	ErrBadParams = errors.New("bad_params")

	// ErrBadCredentials means a user name and password were not accepted: an
	// unknown user, a wrong password, a disabled or expired customer, or a
	// user name that cannot be one (it breaks the user rule of the grammar).
	// The gateway answers 407.
	ErrBadCredentials = errors.New("bad credentials")
)
