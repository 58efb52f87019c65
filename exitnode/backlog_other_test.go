//go:build !linux

package exitnode_test

import "errors"

type backlogListener struct{ addr string }

func (backlogListener) close() {}

func newBacklogZeroListener() (backlogListener, error) {
	return backlogListener{}, errors.New("needs Linux")
}
