package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestK8sExampleKeepsModelControlClosed: the Kubernetes example's
// inference servers take flags `maestro inference` accepts, refuse model
// load/unload (or keep the admin listener on loopback) and expose no admin
// port.
func TestK8sExampleKeepsModelControlClosed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "k8s", "inference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Name  string   `yaml:"name"`
		Args  []string `yaml:"args"`
		Ports []struct {
			ContainerPort int `yaml:"containerPort"`
		} `yaml:"ports"`
	}
	type doc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	servers := 0
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if len(c.Args) == 0 || c.Args[0] != "inference" {
				continue
			}
			servers++
			control, admin := flagValue(t, c.Args[1:], "model-control", "none"), flagValue(t, c.Args[1:], "admin-addr", "127.0.0.1:9002")
			host, port, err := net.SplitHostPort(admin)
			if err != nil {
				t.Fatal(err)
			}
			if control != "none" && !net.ParseIP(host).IsLoopback() {
				t.Errorf("%s: --model-control=%s with the admin listener on %s, reachable from the network", c.Name, control, admin)
			}
			for _, p := range c.Ports {
				if strconv.Itoa(p.ContainerPort) == port {
					t.Errorf("%s exposes the admin port %s", c.Name, port)
				}
			}
		}
	}
	if servers == 0 {
		t.Fatal("no inference server in the example")
	}
}

// flagValue parses args with the inference command's flags and returns
// name's value (def when absent).
func flagValue(t *testing.T, args []string, name, def string) string {
	t.Helper()
	fs := flag.NewFlagSet("k8s", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := fs.String(name, def, "")
	// The other flags of the command, whatever their values.
	for _, a := range args {
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n != name && fs.Lookup(n) == nil {
			fs.String(n, "", "")
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	// Every flag of the example must be one `maestro inference` knows.
	var stderr bytes.Buffer
	probe := append(append([]string{}, args...), "--help")
	if err := runInference(t.Context(), probe, io.Discard, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("maestro inference rejects the example's flags %v: %v\n%s", args, err, stderr.String())
	}
	return *v
}
