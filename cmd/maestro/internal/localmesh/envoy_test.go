package localmesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/localmesh/meshtest"
	"github.com/maestro-ml/maestro/internal/syncbuf"
)

// envFakeEnvoy makes the test binary act as Envoy: the value is the file
// it records its checks in.
const envFakeEnvoy = "MAESTRO_TEST_FAKE_ENVOY"

func TestMain(m *testing.M) {
	if record := os.Getenv(envFakeEnvoy); record != "" {
		os.Exit(fakeEnvoy(record, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeEnvoy stands in for Envoy: it checks its arguments and the bootstrap
// file they name as Envoy would need them, records what it saw, serves
// /ready on the bootstrap's admin address and exits on SIGINT, as Envoy
// does. A problem is recorded and makes it exit 1 before serving.
func fakeEnvoy(record string, args []string) int {
	fail := func(err error) int {
		_ = os.WriteFile(record, []byte("error: "+err.Error()+"\n"), 0o644)
		return 1
	}
	if len(args) != 6 || args[0] != "-c" || args[2] != "--base-id" || args[4] != "--log-level" {
		return fail(fmt.Errorf("arguments %q, want -c <file> --base-id <n> --log-level <level>", args))
	}
	if n, err := strconv.Atoi(args[3]); err != nil || n < 1 {
		return fail(fmt.Errorf("base id %q", args[3]))
	}
	data, err := os.ReadFile(args[1])
	if err != nil {
		return fail(err)
	}
	var boot struct {
		Admin struct {
			Address struct {
				SocketAddress struct {
					Address   string `yaml:"address"`
					PortValue int    `yaml:"port_value"`
				} `yaml:"socket_address"`
			} `yaml:"address"`
		} `yaml:"admin"`
		Node struct {
			ID       string            `yaml:"id"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"node"`
		DynamicResources struct {
			ADS struct {
				APIType string `yaml:"api_type"`
			} `yaml:"ads_config"`
		} `yaml:"dynamic_resources"`
	}
	if err := yaml.Unmarshal(data, &boot); err != nil {
		return fail(fmt.Errorf("bootstrap %s: %w", args[1], err))
	}
	if boot.Node.ID != "gateway-edge" || boot.Node.Metadata["maestro.role"] != "gateway" || boot.DynamicResources.ADS.APIType != "GRPC" {
		return fail(fmt.Errorf("bootstrap %s: node %+v, ads %q", args[1], boot.Node, boot.DynamicResources.ADS.APIType))
	}
	wd, _ := os.Getwd()
	admin := net.JoinHostPort(boot.Admin.Address.SocketAddress.Address, strconv.Itoa(boot.Admin.Address.SocketAddress.PortValue))
	lis, err := net.Listen("tcp", admin)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(record, []byte(fmt.Sprintf("ok %s\nwd %s\n", strings.Join(args, " "), wd)), 0o644); err != nil {
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			fmt.Fprintln(w, "LIVE")
			return
		}
		http.NotFound(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() { <-stop; srv.Close() }()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return 1
	}
	return 0
}

// gatewayPolicy is the fraud policy with a gateway on port.
func gatewayPolicy(t *testing.T, dir string, port int) string {
	t.Helper()
	ports := meshtest.FreePorts(t, 1)
	path := filepath.Join(dir, "policy.yaml")
	meshtest.Fraud{Name: "envoy", CADir: filepath.Join(dir, "ca"), V1Port: ports[0], Extra: fmt.Sprintf(`apiVersion: maestro.dev/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: %d
  routes: [fraud]
`, port)}.Write(t, path)
	return path
}

// TestUpRunsEnvoyForGateways runs up with a stand-in for Envoy (this test
// binary, behind a script named envoy): both --envoy PATH and --envoy auto
// (found on PATH) start it with the gateway's bootstrap, in the wasm
// directory, wait for its admin port and name its listener. Not run
// against a real Envoy: none can be installed here.
func TestUpRunsEnvoyForGateways(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	record := filepath.Join(t.TempDir(), "envoy-record")
	script := filepath.Join(bin, "envoy")
	body := fmt.Sprintf("#!/bin/sh\n%s=%s exec %s \"$@\"\n", envFakeEnvoy, record, self)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	for _, tc := range []struct{ name, envoy string }{
		{"path", script},
		{"auto", EnvoyAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(record)
			dir, wasmDir := t.TempDir(), t.TempDir()
			ports := meshtest.FreePorts(t, 2)
			policyPath := gatewayPolicy(t, dir, ports[0])
			var out syncbuf.Buffer
			started := make(chan Started, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Config{Dir: dir, Policy: policyPath, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
					Envoy: tc.envoy, EnvoyAdminPort: ports[1], WasmDir: wasmDir, Out: &out,
					OnReady: func(s Started) { started <- s }})
			}()
			var st Started
			select {
			case st = <-started:
			case err := <-done:
				rec, _ := os.ReadFile(record)
				t.Fatalf("up ended: %v (stand-in recorded %q)", err, rec)
			case <-time.After(waitLimit):
				t.Fatal("up not ready")
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run after cancel: %v", err)
			}
			rec, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("ok -c %s --base-id 1 --log-level warn\nwd %s\n", filepath.Join(dir, "gateway-edge.yaml"), wasmDir)
			if string(rec) != want {
				t.Errorf("the stand-in recorded\n%s\nwant\n%s", rec, want)
			}
			wantGW := StartedGateway{Name: "edge", Listener: fmt.Sprintf("127.0.0.1:%d", ports[0]), Admin: fmt.Sprintf("127.0.0.1:%d", ports[1])}
			if len(st.Gateways) != 1 || st.Gateways[0] != wantGW {
				t.Errorf("gateways = %+v, want %+v", st.Gateways, wantGW)
			}
			if !strings.Contains(out.String(), "gateways run by "+script) {
				t.Errorf("the output does not say Envoy runs the gateways:\n%s", out.String())
			}
		})
	}
}

// TestUpSaysWhyGatewaysDidNotStart: without the filters' .wasm files the
// mesh still runs, and up says the gateways did not start and what to do.
func TestUpSaysWhyGatewaysDidNotStart(t *testing.T) {
	dir := t.TempDir()
	ports := meshtest.FreePorts(t, 1)
	policyPath := gatewayPolicy(t, dir, ports[0])
	var out syncbuf.Buffer
	started := make(chan Started, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Dir: dir, Policy: policyPath, XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			WasmDir: t.TempDir(), Out: &out, OnReady: func(s Started) { started <- s }})
	}()
	select {
	case st := <-started:
		if len(st.Gateways) != 0 {
			t.Errorf("gateways %+v started without their filters", st.Gateways)
		}
	case err := <-done:
		t.Fatalf("up ended: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("up not ready")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if !strings.Contains(out.String(), "gateways not started: the filters' code") || !strings.Contains(out.String(), "make wasm") {
		t.Errorf("the output does not say why the gateways did not start:\n%s", out.String())
	}
}
