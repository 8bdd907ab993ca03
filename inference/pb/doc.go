// Package pb holds the Go code protoc generates from
// inference/proto/grpc_predict_v2.proto: the Open Inference Protocol's
// messages and the GRPCInferenceService client and server. It is committed;
// `make proto` regenerates it.
package pb
