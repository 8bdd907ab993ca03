package slo

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// grpcInferencePrefix is the path prefix of the Open Inference Protocol's
// gRPC service.
const grpcInferencePrefix = "/inference.GRPCInferenceService/"

// ModelFromPath returns the model of an Open Inference Protocol REST path
// (/v2/models/<model>[/versions/<v>][/...]), or "".
func ModelFromPath(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	rest, ok := strings.CutPrefix(path, "/v2/models/")
	if !ok {
		return ""
	}
	model, _, _ := strings.Cut(rest, "/")
	return model
}

// IsGRPCInference reports whether path is a call of the inference service.
func IsGRPCInference(path string) bool { return strings.HasPrefix(path, grpcInferencePrefix) }

// ModelFromGRPC returns the model named by the first gRPC message of a
// request body: field 1 (model_name of ModelInferRequest, name of
// ModelReadyRequest and ModelMetadataRequest). It returns "" when the
// bytes are too short, compressed, or malformed.
func ModelFromGRPC(body []byte) string {
	name, _ := modelFromGRPC(body)
	return string(name)
}

// modelFromGRPC is ModelFromGRPC without the copy. complete is false when
// more of the body could change the answer: the bytes end before field 1
// does, or before the message does without naming a model.
func modelFromGRPC(body []byte) (name []byte, complete bool) {
	if len(body) < 5 {
		return nil, false
	}
	if body[0] != 0 {
		return nil, true
	}
	msg := body[5:]
	whole := false
	if n := int(uint32(body[1])<<24 | uint32(body[2])<<16 | uint32(body[3])<<8 | uint32(body[4])); n <= len(msg) {
		msg, whole = msg[:n], true
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, whole
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return nil, whole
			}
			return v, true
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return nil, whole
		}
		msg = msg[n:]
	}
	return nil, whole
}

// NoGRPCStatus marks a response without a grpc-status.
const NoGRPCStatus = -1

// ParseGRPCStatus reads a grpc-status value; "" or garbage is NoGRPCStatus
// for an empty value and 2 (UNKNOWN) for garbage, as gRPC clients treat it.
func ParseGRPCStatus(v string) int {
	if v == "" {
		return NoGRPCStatus
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 2
	}
	return n
}

// IsError classifies a finished request: no response (status 0), a 5xx,
// or a gRPC status other than OK.
func IsError(status, grpcStatus int) bool {
	return status == 0 || status >= 500 || grpcStatus > 0
}

// tagValue makes a route or model safe inside a dotted stat name.
func tagValue(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '/' || c == ':'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

// StatName is the Envoy stat name of metric for a route and model, with
// extra "key.value" tags appended in order.
func StatName(metric, route, model string, extra ...string) string {
	var sb strings.Builder
	sb.WriteString("maestro_slo_")
	sb.WriteString(metric)
	sb.WriteString(".route.")
	sb.WriteString(tagValue(route))
	sb.WriteString(".model.")
	sb.WriteString(tagValue(model))
	for _, e := range extra {
		sb.WriteByte('.')
		sb.WriteString(e)
	}
	return sb.String()
}

// targetTag names a latency target in stat names: "p99_250ms",
// "p99_9_100ms".
func targetTag(percentile float64, thresholdMs uint32) string {
	p := strings.ReplaceAll(strconv.FormatFloat(percentile, 'f', -1, 64), ".", "_")
	return "target.p" + p + "_" + strconv.FormatUint(uint64(thresholdMs), 10) + "ms"
}

// StatsTags are the Envoy stats_config.stats_tags regexes that lift the
// tags out of the stat names (first group: removed from the name; second:
// the tag value), keyed by tag name. docs/filters.md shows them as YAML.
func StatsTags() map[string]string {
	return map[string]string{
		"route":  `^wasmcustom\.maestro_slo_\w+(\.route\.([^.]+))`,
		"model":  `^wasmcustom\.maestro_slo_\w+(?:\.route\.[^.]+)?(\.model\.([^.]+))`,
		"target": `^wasmcustom\.maestro_slo_\w+.*(\.target\.([^.]+))$`,
		"window": `^wasmcustom\.maestro_slo_\w+.*(\.window\.([^.]+))$`,
	}
}
