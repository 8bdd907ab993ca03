package oipclient_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/oipclient"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
)

// TestBothProtocolsAnswerAlike: the same request over gRPC and REST gets the
// same outputs, metadata and errors, so a caller need not care which one it
// was given.
func TestBothProtocolsAnswerAlike(t *testing.T) {
	srv := inferencetest.Start(t, inferencetest.Options{Name: "oip-test"})
	clients := map[string]oipclient.Client{
		"grpc": oipclient.NewGRPC(srv.Conn(t)),
		"http": oipclient.NewHTTP("http://"+srv.HTTPAddr, nil),
	}
	row := strings.TrimSuffix(strings.Repeat("0.25,", 30), ",")
	req := tensor.JSONRequest{Inputs: []tensor.JSONInput{{
		Name: "features", Datatype: "FP32", Shape: []int64{1, 30}, Data: json.RawMessage("[" + row + "]"),
	}}}
	answers := map[string]string{}
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			meta, err := c.Metadata(ctx, "fraud", "1")
			if err != nil {
				t.Fatal(err)
			}
			if len(meta) != 1 || meta[0].Name != "features" || meta[0].Datatype != runtime.FP32 {
				t.Errorf("metadata = %+v, want one FP32 input named features", meta)
			}
			resp, err := c.Infer(ctx, "fraud", "1", req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ModelName != "fraud" || resp.ModelVersion != "1" || resp.Parameters["maestro_server"] != "oip-test" || len(resp.Outputs) != 1 {
				t.Fatalf("response = %+v", resp)
			}
			answers[name] = string(resp.Outputs[0].Data)
			if _, err := c.Infer(ctx, "no-such-model", "", req); err == nil || !strings.Contains(err.Error(), "no-such-model") {
				t.Errorf("unknown model: err = %v, want one naming the model", err)
			}
		})
	}
	if answers["grpc"] != answers["http"] {
		t.Errorf("grpc answered %s, http %s", answers["grpc"], answers["http"])
	}
}

func TestGRPCRequestNamesTheBadInput(t *testing.T) {
	t.Parallel()
	_, err := oipclient.GRPCRequest("m", "", tensor.JSONRequest{Inputs: []tensor.JSONInput{{
		Name: "x", Datatype: "FP32", Shape: []int64{2}, Data: json.RawMessage(`[1, "a"]`),
	}}})
	if err == nil || !strings.Contains(err.Error(), "x") {
		t.Fatalf("err = %v, want one naming input x", err)
	}
}
