// Package deploy holds the files an operator deploys atrelay with; the demo's
// configuration is embedded so that `atrelay demo` runs from any directory.
package deploy

import _ "embed"

// DemoConfig is deploy/demo.yaml.
//
//go:embed demo.yaml
var DemoConfig []byte
