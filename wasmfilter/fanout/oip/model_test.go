package oip

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/maestro-ml/maestro/inference/pb"
)

// framed encodes m as a gRPC request body, as a client's generated code
// would.
func framed(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return Frame(b)
}

func TestFirstModelName(t *testing.T) {
	infer := framed(t, &pb.ModelInferRequest{ModelName: "fraud", ModelVersion: "2", Id: "r1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 2},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}}}})
	// A message without model_name (field 1), only later fields.
	noName := framed(t, &pb.ModelInferRequest{ModelVersion: "2", Id: "r1"})
	compressed := append([]byte{1}, infer[1:]...)
	tests := map[string]struct {
		body     []byte
		name     string
		done     bool
		allSizes bool // every prefix from the name on gives the same answer
	}{
		"infer":                {infer, "fraud", true, true},
		"ready":                {framed(t, &pb.ModelReadyRequest{Name: "churn", Version: "1"}), "churn", true, true},
		"metadata":             {framed(t, &pb.ModelMetadataRequest{Name: "recommendations"}), "recommendations", true, true},
		"frame header only":    {infer[:5], "", false, false},
		"short frame header":   {infer[:3], "", false, false},
		"name cut":             {infer[:9], "", false, false},
		"no name, whole":       {noName, "", true, false},
		"no name, partial":     {noName[:len(noName)-1], "", false, false},
		"compressed":           {compressed, "", true, false},
		"empty message":        {Frame(nil), "", true, false},
		"garbage, whole":       {Frame([]byte{0xff, 0xff}), "", true, false},
		"second message after": {append(append([]byte{}, framed(t, &pb.ModelReadyRequest{Name: "a"})...), framed(t, &pb.ModelReadyRequest{Name: "b"})...), "a", true, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, done := FirstModelName(tc.body)
			if got != tc.name || done != tc.done {
				t.Errorf("FirstModelName = %q, %v; want %q, %v", got, done, tc.name, tc.done)
			}
			if !tc.allSizes {
				return
			}
			// 5 frame bytes, a tag and a length byte, then the name: any
			// prefix that holds the name gives it.
			for n := 7 + len(tc.name); n <= len(tc.body); n++ {
				if got, done := FirstModelName(tc.body[:n]); got != tc.name || !done {
					t.Fatalf("prefix of %d bytes: %q, %v", n, got, done)
				}
			}
		})
	}
}
