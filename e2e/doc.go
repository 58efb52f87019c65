// Package e2e holds the end-to-end tests: a real farm (origin, exits,
// gateway) on loopback, driven by the real curl as a customer would.
package e2e
