module github.com/farmgate/farmgate

go 1.26.0

require (
	github.com/elazarl/goproxy v1.9.3
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/crypto v0.59.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
)

require golang.org/x/text v0.44.0 // indirect
