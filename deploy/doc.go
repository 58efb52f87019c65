// Package deploy holds no farmgate code: it is the home of the deployment
// files and of the tests that keep them honest.
//
//   - compose/: a two-DC farm (two gateways, four exits, Redis) for docker
//     compose, with a README that brings it up and sends a request through it;
//   - systemd/: hardened units for a gateway and an exit;
//   - kubernetes/: gateways as a Deployment, exits as a host-network
//     DaemonSet, a headless Service for gossip seeds, Secret and ConfigMap;
//   - config/: the example configs `farmgate config-example` prints (checked
//     by cmd/farmgate's tests, only referenced from here);
//   - the repository's Dockerfile builds the image all of them run.
//
// The tests parse every manifest, build the farmgate binary and check that
// each command line and FARMGATE_* variable in them names a flag that
// `farmgate SUBCOMMAND --help` lists, that referenced config files are the
// shipped examples, and that what the manifests rely on (surviving SIGHUP,
// probe endpoints reachable without a token) holds for the real binary.
// They run `docker compose config`, `systemd-analyze verify` and
// `kubectl kustomize` where those tools are installed.
//
// It is not a place for deployment logic in Go: nothing imports it.
package deploy
