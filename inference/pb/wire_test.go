package pb

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestFieldNumbersMatchThePublishedProtocol pins every message's field
// numbers to KServe's grpc_predict_v2.proto and, for the repository
// extension and the extra parameter choices, to Triton's grpc_service.proto:
// a renumbered field would silently break every client.
func TestFieldNumbersMatchThePublishedProtocol(t *testing.T) {
	want := map[protoreflect.FullName]map[string]protoreflect.FieldNumber{
		"inference.ServerLiveResponse":                           {"live": 1},
		"inference.ServerReadyResponse":                          {"ready": 1},
		"inference.ModelReadyRequest":                            {"name": 1, "version": 2},
		"inference.ModelReadyResponse":                           {"ready": 1},
		"inference.ServerMetadataResponse":                       {"name": 1, "version": 2, "extensions": 3},
		"inference.ModelMetadataRequest":                         {"name": 1, "version": 2},
		"inference.ModelMetadataResponse":                        {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5},
		"inference.ModelMetadataResponse.TensorMetadata":         {"name": 1, "datatype": 2, "shape": 3},
		"inference.ModelInferRequest":                            {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6, "raw_input_contents": 7},
		"inference.ModelInferRequest.InferInputTensor":           {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
		"inference.ModelInferRequest.InferRequestedOutputTensor": {"name": 1, "parameters": 2},
		"inference.ModelInferResponse":                           {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5, "raw_output_contents": 6},
		"inference.ModelInferResponse.InferOutputTensor":         {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
		"inference.InferParameter":                               {"bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5},
		"inference.InferTensorContents": {"bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4,
			"uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8},
		"inference.ModelRepositoryParameter":           {"bool_param": 1, "int64_param": 2, "string_param": 3, "bytes_param": 4},
		"inference.RepositoryIndexRequest":             {"repository_name": 1, "ready": 2},
		"inference.RepositoryIndexResponse":            {"models": 1},
		"inference.RepositoryIndexResponse.ModelIndex": {"name": 1, "version": 2, "state": 3, "reason": 4},
		"inference.RepositoryModelLoadRequest":         {"repository_name": 1, "model_name": 2, "parameters": 3},
		"inference.RepositoryModelUnloadRequest":       {"repository_name": 1, "model_name": 2, "parameters": 3},
	}
	file := File_grpc_predict_v2_proto
	for name, fields := range want {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		md, ok := d.(protoreflect.MessageDescriptor)
		if err != nil || !ok {
			t.Errorf("message %s missing: %v", name, err)
			continue
		}
		if md.Fields().Len() != len(fields) {
			t.Errorf("%s has %d fields, want %d", name, md.Fields().Len(), len(fields))
		}
		for f, num := range fields {
			fd := md.Fields().ByName(protoreflect.Name(f))
			if fd == nil || fd.Number() != num {
				t.Errorf("%s.%s: got %v, want field number %d", name, f, fd, num)
			}
		}
	}
	svc := file.Services().ByName("GRPCInferenceService")
	if svc == nil || svc.FullName() != "inference.GRPCInferenceService" {
		t.Fatalf("service inference.GRPCInferenceService missing")
	}
	for _, m := range []string{"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
		"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"} {
		if svc.Methods().ByName(protoreflect.Name(m)) == nil {
			t.Errorf("method %s missing", m)
		}
	}
}
