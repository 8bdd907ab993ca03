package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/inference/oipclient"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
	"github.com/maestro-ml/maestro/wasmfilter/fanout"
)

// inputFlags collects repeated --input name=v1,v2,... flags.
type inputFlags []string

func (f *inputFlags) String() string     { return strings.Join(*f, " ") }
func (f *inputFlags) Set(v string) error { *f = append(*f, v); return nil }

// runPredict sends one inference request and prints the outputs, so users
// need no grpcurl or curl.
func runPredict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("predict", stderr, `Sends one inference request and prints the outputs. --input values are row-major;
the datatype and the shape come from the model's metadata (rows = values / row width).
--json reads a REST inference request body ({"inputs": [...]}); - reads stdin.`,
		"[flags] MODEL[:VERSION] (--input NAME=V1,V2,... ... | --json FILE)")
	addr := fs.String("addr", "", "server `address` (default 127.0.0.1:9000, or 127.0.0.1:8080 with --http)")
	useHTTP := fs.Bool("http", false, "use the REST API instead of gRPC")
	var inputs inputFlags
	fs.Var(&inputs, "input", "an input as `name=v1,v2,...` (repeatable)")
	jsonFile := fs.String("json", "", "read the request from a JSON `file` in the REST format")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	// Flags may follow the model name: parse around positional arguments.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 || (len(inputs) == 0) == (*jsonFile == "") {
		fmt.Fprintln(stderr, "maestro predict: want one MODEL[:VERSION] and either --input flags or --json")
		fs.Usage()
		return errUsage
	}
	model, version, _ := strings.Cut(pos[0], ":")
	if *addr == "" {
		*addr = "127.0.0.1:9000"
		if *useHTTP {
			*addr = "127.0.0.1:8080"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var c oipclient.Client
	if *useHTTP {
		c = oipclient.NewHTTP("http://"+*addr, nil)
	} else {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("dial %s: %w", *addr, err)
		}
		defer conn.Close()
		c = oipclient.NewGRPC(conn)
	}

	var req tensor.JSONRequest
	if *jsonFile != "" {
		data, err := readFile(*jsonFile)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return fmt.Errorf("--json %s: %w", *jsonFile, err)
		}
	} else {
		meta, err := c.Metadata(ctx, model, version)
		if err != nil {
			return err
		}
		for _, in := range inputs {
			ji, err := inputFromFlag(in, meta)
			if err != nil {
				return err
			}
			req.Inputs = append(req.Inputs, ji)
		}
	}
	resp, err := c.Infer(ctx, model, version, req)
	if err != nil {
		return err
	}
	return printOutputs(stdout, resp)
}

func readFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--json: %w", err)
	}
	return data, nil
}

// inputFromFlag turns name=v1,v2,... into a tensor shaped by the model's
// declared input: the variable (batch) dimension takes what the values fill.
func inputFromFlag(flag string, meta []runtime.TensorSpec) (tensor.JSONInput, error) {
	name, values, ok := strings.Cut(flag, "=")
	if !ok || name == "" {
		return tensor.JSONInput{}, fmt.Errorf("--input %q: want name=value[,value]", flag)
	}
	var spec *runtime.TensorSpec
	var names []string
	for i := range meta {
		names = append(names, meta[i].Name)
		if meta[i].Name == name {
			spec = &meta[i]
		}
	}
	if spec == nil {
		return tensor.JSONInput{}, fmt.Errorf("--input %q: the model has no input %q (inputs: %s)", flag, name, strings.Join(names, ", "))
	}
	vals := strings.Split(values, ",")
	if spec.Datatype == runtime.Bytes {
		for i, v := range vals {
			q, _ := json.Marshal(v) // marshalling a string cannot fail
			vals[i] = string(q)
		}
	}
	fixed, variable := int64(1), -1
	for i, d := range spec.Shape {
		if d == -1 {
			if variable >= 0 {
				return tensor.JSONInput{}, fmt.Errorf("--input %s: shape %v has several variable dimensions; use --json", name, spec.Shape)
			}
			variable = i
			continue
		}
		fixed *= d
	}
	n := int64(len(vals))
	shape := append([]int64(nil), spec.Shape...)
	switch {
	case variable >= 0 && n%fixed == 0:
		shape[variable] = n / fixed
	case variable < 0 && n == fixed:
	default:
		return tensor.JSONInput{}, fmt.Errorf("--input %s: %d values do not fill shape %v", name, n, spec.Shape)
	}
	in := tensor.JSONInput{Name: name, Datatype: string(spec.Datatype), Shape: shape, Data: json.RawMessage("[" + strings.Join(vals, ",") + "]")}
	// Check the values here, so a typo is reported the same way over both
	// protocols.
	if _, err := tensor.DecodeJSON(in); err != nil {
		return tensor.JSONInput{}, fmt.Errorf("--input %s: %w", name, err)
	}
	return in, nil
}

// printOutputs writes each output's name, datatype and shape, then one line
// per row.
func printOutputs(w io.Writer, resp *tensor.JSONResponse) error {
	fmt.Fprintf(w, "model %s", resp.ModelName)
	if resp.ModelVersion != "" {
		// A combined answer is of no one version.
		fmt.Fprintf(w, " version %s", resp.ModelVersion)
	}
	if s, ok := resp.Parameters["maestro_server"].(string); ok {
		fmt.Fprintf(w, " (server %s)", s)
	}
	fmt.Fprintln(w)
	printEnsemble(w, resp.Parameters)
	for _, o := range resp.Outputs {
		fmt.Fprintf(w, "%s %s %v\n", o.Name, o.Datatype, o.Shape)
		var vals []json.RawMessage
		if err := json.Unmarshal(o.Data, &vals); err != nil {
			return fmt.Errorf("output %s: %w", o.Name, err)
		}
		per := len(vals)
		if len(o.Shape) > 1 && o.Shape[0] > 0 {
			per = len(vals) / int(o.Shape[0])
		}
		for i := 0; i < len(vals); i += max(per, 1) {
			row := vals[i:min(i+max(per, 1), len(vals))]
			parts := make([]string, len(row))
			for j, v := range row {
				parts[j] = string(v)
			}
			fmt.Fprintf(w, "  %s\n", strings.Join(parts, " "))
		}
	}
	return nil
}

// printEnsemble writes, for an answer the fanout filter combined, the
// strategy and each member's contribution (its scores, its latency) and
// the members left out, from the response parameters docs/filters.md
// lists.
func printEnsemble(w io.Writer, params map[string]any) {
	str := func(k string) string { s, _ := params[k].(string); return s }
	strategy := str(fanout.ParamStrategy)
	if strategy == "" {
		return
	}
	latency := map[string]string{}
	for _, kv := range strings.Split(str(fanout.ParamLatency), ",") {
		if label, ms, ok := strings.Cut(kv, "="); ok {
			latency[label] = ms
		}
	}
	fmt.Fprintf(w, "ensemble %s of %s\n", strategy, str(fanout.ParamAnswered))
	for _, m := range strings.Split(str(fanout.ParamMembers), ";") {
		label, scores, ok := strings.Cut(m, "=")
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  member %s: %s", label, scores)
		if ms := latency[label]; ms != "" {
			fmt.Fprintf(w, " (%s ms)", ms)
		}
		fmt.Fprintln(w)
	}
	if missing := str(fanout.ParamMissing); missing != "" {
		fmt.Fprintf(w, "  missing: %s\n", missing)
	}
	fmt.Fprintln(w, "combined:")
}
