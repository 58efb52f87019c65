//go:build unix

package sysmon

import (
	"fmt"
	"os"
	"syscall"
)

// KeepAwake re-executes the running program, with the same arguments, with
// GODEBUG's schedtrace set (see the package comment), unless Env says not
// to. It returns only when it did not re-execute: nil when there was
// nothing to do, an error when it could not (the program then goes on as
// it is, with the runtime's own behaviour). Call it first thing in main,
// before any goroutine or open file matters: exec replaces the process.
func KeepAwake() error {
	env, ok := Env(os.Environ())
	if !ok {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("re-execute %s: %w", exe, err)
	}
	return nil // not reached
}
