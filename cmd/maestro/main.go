// Command maestro runs every part of the Maestro inference mesh: the xDS
// control plane, the inference server, and the tools around them. Each
// subcommand lives in its own file; this one only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one maestro subcommand. run parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the table of subcommands, in the order --help lists them.
func commands() []command {
	return []command{
		{"up", "run the whole mesh locally on the embedded demo (control plane, inference servers, bootstraps)", runUp},
		{"controlplane", "serve mesh policies to Envoy and proxyless gRPC over xDS, reloading on change", runControlplane},
		{"validate", "check mesh policies; --output prints the xDS a node would receive", runValidate},
		{"bootstrap", "print an Envoy bootstrap, or with --grpc a gRPC xDS bootstrap, for a node", runBootstrap},
		{"gateway", "run the built-in gateway data plane: xDS from the control plane, wasm filters, Envoy stats", runGateway},
		{"inference", "serve a model repository over the Open Inference Protocol (gRPC + REST)", runInference},
		{"predict", "send one inference request to a server and print the outputs", runPredict},
		{"slo", "write Prometheus SLO alert rules or a Grafana dashboard for a policy", runSLO},
		{"certs", "issue a workload certificate to files, or print the trust bundle (built-in CA or Vault)", runCerts},
		{"cost", "report predictions, core-seconds, GB-seconds and dollars per 1M predictions per model and route", runCost},
		{"istio", "render a policy as Istio resources (VirtualService, DestinationRule, security, WasmPlugin)", runIstio},
		{"version", "print the version, the commit and the Go toolchain of this binary", runVersion},
	}
}

// errUsage marks an error already explained to the user by a flag set; main
// exits 2 without printing it again.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "maestro %s: %v\n", c.name, err)
			var ec interface{ ExitCode() int }
			if errors.As(err, &ec) {
				return ec.ExitCode()
			}
			return 1
		}
	}
	fmt.Fprintf(stderr, "maestro: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: maestro <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'maestro <command> --help' for the flags of one command.")
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// subcommands stay testable, and whose --help has the layout every command
// shares: the usage lines, what the command does, then its flags.
func newFlagSet(name string, stderr io.Writer, about string, usage ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("maestro "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for i, u := range usage {
			prefix := "Usage: "
			if i > 0 {
				prefix = "       "
			}
			fmt.Fprintln(stderr, strings.TrimRight(prefix+"maestro "+name+" "+u, " "))
		}
		fmt.Fprintf(stderr, "\n%s\n", strings.TrimSpace(about))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// subcommand is one subcommand of a command group (certs, slo, istio).
type subcommand struct{ name, summary string }

// chooseSubcommand returns the subcommand args start with. Otherwise it
// prints the group's help, in the layout of maestro's own, and returns
// flag.ErrHelp for -h and --help or errUsage.
func chooseSubcommand(group string, args []string, subs []subcommand, stderr io.Writer) (string, error) {
	for _, sc := range subs {
		if len(args) > 0 && args[0] == sc.name {
			return sc.name, nil
		}
	}
	names := make([]string, len(subs))
	for i, sc := range subs {
		names[i] = sc.name
	}
	fmt.Fprintf(stderr, "Usage: maestro %s <%s> [flags]\n\nCommands:\n", group, strings.Join(names, "|"))
	for _, sc := range subs {
		fmt.Fprintf(stderr, "  %-14s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintf(stderr, "\nRun 'maestro %s <command> --help' for the flags of one command.\n", group)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		return "", flag.ErrHelp
	}
	return "", errUsage
}

// parseFlags parses args into fs, mapping a parse error to errUsage (the
// flag package has already printed it).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// stringsFlag is a repeatable string flag (-f a.yaml -f dir/).
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}
