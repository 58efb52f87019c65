// Package adminhttp holds what every farmgate admin listener shares, the
// gateway's and the exit's alike: who may read it (loopback freely, anyone
// else with the bearer token or the cookie the dashboard's login sets), the
// health probes, and JSON replies.
//
// It is not the admin API itself: the routes and what they read live with
// the node they describe (gateway/admin, exitnode). It imports no package
// of ours.
package adminhttp
