// Package sysmon keeps the Go runtime's monitor thread (sysmon) out of its
// deep sleep, which a process of many short connections pays for dearly.
//
// When all of a process's processors go idle, sysmon sleeps until the next
// timer. The next system call made through the syscall package wakes it,
// and it then polls every 20 µs, each poll a sleep and a context switch,
// for at least a millisecond, doubling the interval only after fifty polls
// found nothing to do. A gateway or an exit that goes idle between
// connections (as the four exits behind a gateway do, each with a quarter
// of the load) starts that over for nearly every connection: accepting,
// dialling and closing go through the syscall package. In profiles of
// farmload's tunnels phase, sysmon and the scheduler's search for work were
// a quarter of an exit's CPU. golang/go#18236 tracks sysmon's fixed tick;
// there is no setting for it.
//
// There is one runtime behaviour to lean on: while GODEBUG's schedtrace is
// set, sysmon never deep-sleeps (it stays awake to print the trace), so it
// backs off to polling every 10 ms while there is nothing to do, instead
// of starting over at 20 µs each time the process wakes. KeepAwake
// re-executes the process with schedtrace=2147483647, a trace line every
// 24.8 days: one line on stderr at start when the host has been up longer
// than that, then one per 24.8 days. In farmload's tunnels phase it took
// the exits' CPU per tunnel from 1.05–1.11× the direct exit's to
// 0.92–0.98× (docs/performance.md).
//
// An operator who wants the runtime's own behaviour sets
// FARMGATE_SYSMON=default; a GODEBUG that already sets schedtrace is left
// as it is.
package sysmon

import (
	"strings"
)

// OptOut is the environment variable that, set to "default", keeps the
// runtime's own sysmon behaviour.
const OptOut = "FARMGATE_SYSMON"

// setting is the GODEBUG setting KeepAwake adds: the longest trace period
// the runtime takes (milliseconds, an int32).
const setting = "schedtrace=2147483647"

// Env returns the environment to re-execute with, and whether to: not when
// the operator opted out, nor when GODEBUG already sets schedtrace (which
// is also how a re-executed process knows it was).
func Env(environ []string) ([]string, bool) {
	godebug := -1
	for i, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case OptOut:
			if v == "default" {
				return nil, false
			}
		case "GODEBUG":
			for s := range strings.SplitSeq(v, ",") {
				if name, _, _ := strings.Cut(strings.TrimSpace(s), "="); name == "schedtrace" {
					return nil, false
				}
			}
			godebug = i
		}
	}
	out := append([]string(nil), environ...)
	if godebug < 0 {
		return append(out, "GODEBUG="+setting), true
	}
	if strings.TrimPrefix(out[godebug], "GODEBUG=") == "" {
		out[godebug] = "GODEBUG=" + setting
	} else {
		out[godebug] += "," + setting
	}
	return out, true
}
