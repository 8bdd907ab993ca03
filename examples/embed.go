// Package examples holds Maestro's example policies, Envoy, Istio and
// Kubernetes files and the demo model repository. Every example is loaded
// by a test in this package, so none can rot. The demo mesh and its models
// are embedded so that `maestro up` runs from any directory.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed mesh.yaml mesh-rest.yaml models/*/config.yaml models/*/[0-9]*
var demo embed.FS

// Demo returns the demo mesh policy (mesh.yaml and its REST side,
// mesh-rest.yaml) and its model repository
// (models/<model>/config.yaml and models/<model>/<version>/...).
func Demo() fs.FS { return demo }
