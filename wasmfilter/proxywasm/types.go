package proxywasm

import (
	"errors"
	"fmt"
	"strconv"
)

// Action is what a stream callback tells the host to do next.
type Action uint32

const (
	// ActionContinue lets the stream go on to the next filter.
	ActionContinue Action = 0
	// ActionPause stops iteration (for bodies: and buffers the data) until
	// the filter resumes the stream or sends a local response.
	ActionPause Action = 1
)

// Status is a host call's result code, as numbered by the specification.
type Status uint32

// Host call results.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

// Sentinel errors for the host's status codes; check with errors.Is.
var (
	ErrNotFound             = errors.New("proxy-wasm: not found")
	ErrBadArgument          = errors.New("proxy-wasm: bad argument")
	ErrSerializationFailure = errors.New("proxy-wasm: serialization failure")
	ErrParseFailure         = errors.New("proxy-wasm: parse failure")
	ErrInvalidMemoryAccess  = errors.New("proxy-wasm: invalid memory access")
	ErrEmpty                = errors.New("proxy-wasm: empty")
	ErrCasMismatch          = errors.New("proxy-wasm: cas mismatch")
	ErrInternalFailure      = errors.New("proxy-wasm: internal failure")
	ErrUnimplemented        = errors.New("proxy-wasm: unimplemented")
)

// Err converts a host status code into nil or one of the sentinel errors.
func (s Status) Err() error {
	switch s {
	case StatusOK:
		return nil
	case StatusNotFound:
		return ErrNotFound
	case StatusBadArgument:
		return ErrBadArgument
	case StatusSerializationFailure:
		return ErrSerializationFailure
	case StatusParseFailure:
		return ErrParseFailure
	case StatusInvalidMemoryAccess:
		return ErrInvalidMemoryAccess
	case StatusEmpty:
		return ErrEmpty
	case StatusCasMismatch:
		return ErrCasMismatch
	case StatusInternalFailure:
		return ErrInternalFailure
	case StatusUnimplemented:
		return ErrUnimplemented
	}
	return fmt.Errorf("proxy-wasm: unknown status %d", uint32(s))
}

// StatusOf is the inverse of Status.Err, for hosts that answer guests.
func StatusOf(err error) Status {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, ErrNotFound):
		return StatusNotFound
	case errors.Is(err, ErrBadArgument):
		return StatusBadArgument
	case errors.Is(err, ErrSerializationFailure):
		return StatusSerializationFailure
	case errors.Is(err, ErrParseFailure):
		return StatusParseFailure
	case errors.Is(err, ErrInvalidMemoryAccess):
		return StatusInvalidMemoryAccess
	case errors.Is(err, ErrEmpty):
		return StatusEmpty
	case errors.Is(err, ErrCasMismatch):
		return StatusCasMismatch
	case errors.Is(err, ErrUnimplemented):
		return StatusUnimplemented
	}
	return StatusInternalFailure
}

// LogLevel is a proxy_log level.
type LogLevel uint32

// Log levels, as numbered by the specification.
const (
	LogLevelTrace    LogLevel = 0
	LogLevelDebug    LogLevel = 1
	LogLevelInfo     LogLevel = 2
	LogLevelWarn     LogLevel = 3
	LogLevelError    LogLevel = 4
	LogLevelCritical LogLevel = 5
)

// String names the level the way Envoy prints it.
func (l LogLevel) String() string {
	switch l {
	case LogLevelTrace:
		return "trace"
	case LogLevelDebug:
		return "debug"
	case LogLevelInfo:
		return "info"
	case LogLevelWarn:
		return "warn"
	case LogLevelError:
		return "error"
	case LogLevelCritical:
		return "critical"
	}
	return fmt.Sprintf("level(%d)", uint32(l))
}

// MapType selects a header map in the header-map host calls.
type MapType uint32

// Header maps, as numbered by the specification.
const (
	MapTypeHTTPRequestHeaders          MapType = 0
	MapTypeHTTPRequestTrailers         MapType = 1
	MapTypeHTTPResponseHeaders         MapType = 2
	MapTypeHTTPResponseTrailers        MapType = 3
	MapTypeGRPCReceiveInitialMetadata  MapType = 4
	MapTypeGRPCReceiveTrailingMetadata MapType = 5
	MapTypeHTTPCallResponseHeaders     MapType = 6
	MapTypeHTTPCallResponseTrailers    MapType = 7
)

// BufferType selects a buffer in the buffer host calls.
type BufferType uint32

// Buffers, as numbered by the specification.
const (
	BufferTypeHTTPRequestBody      BufferType = 0
	BufferTypeHTTPResponseBody     BufferType = 1
	BufferTypeDownstreamData       BufferType = 2
	BufferTypeUpstreamData         BufferType = 3
	BufferTypeHTTPCallResponseBody BufferType = 4
	BufferTypeGRPCReceiveBuffer    BufferType = 5
	BufferTypeVMConfiguration      BufferType = 6
	BufferTypePluginConfiguration  BufferType = 7
)

// StreamType selects the direction in proxy_continue_stream and
// proxy_close_stream.
type StreamType uint32

// Stream directions, as numbered by the specification.
const (
	StreamTypeRequest    StreamType = 0
	StreamTypeResponse   StreamType = 1
	StreamTypeDownstream StreamType = 2
	StreamTypeUpstream   StreamType = 3
)

// MetricType is the kind of a metric in proxy_define_metric.
type MetricType uint32

// Metric kinds, as numbered by the specification.
const (
	MetricTypeCounter   MetricType = 0
	MetricTypeGauge     MetricType = 1
	MetricTypeHistogram MetricType = 2
)

// String names the metric kind.
func (m MetricType) String() string {
	switch m {
	case MetricTypeCounter:
		return "counter"
	case MetricTypeGauge:
		return "gauge"
	case MetricTypeHistogram:
		return "histogram"
	}
	return fmt.Sprintf("metric(%d)", uint32(m))
}

// Buffer-replacement positions for proxy_set_buffer_bytes, following Envoy:
// start 0 with length 0 prepends, start 0 with a length covering the buffer
// replaces it, a start at or past the end appends.
const (
	bufferWhole = ^uint32(0) >> 1
)

// HostError is a failed host call: the operation, what it was about (a
// header name, property path, cluster...) and the host's status as one of
// the sentinel errors, so errors.Is(err, ErrNotFound) works. It avoids fmt
// on paths a filter takes on every request, which is slow inside wasm.
type HostError struct {
	Op, Arg string
	Err     error
}

// Error reads "get header \"x-model\": proxy-wasm: not found".
func (e *HostError) Error() string {
	if e.Arg == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + " " + strconv.Quote(e.Arg) + ": " + e.Err.Error()
}

// Unwrap returns the sentinel.
func (e *HostError) Unwrap() error { return e.Err }

func hostError(op, arg string, err error) error { return &HostError{Op: op, Arg: arg, Err: err} }

func bufferName(bt BufferType) string {
	switch bt {
	case BufferTypeHTTPRequestBody:
		return "http_request_body"
	case BufferTypeHTTPResponseBody:
		return "http_response_body"
	case BufferTypeHTTPCallResponseBody:
		return "http_call_response_body"
	case BufferTypeGRPCReceiveBuffer:
		return "grpc_receive_buffer"
	case BufferTypeVMConfiguration:
		return "vm_configuration"
	case BufferTypePluginConfiguration:
		return "plugin_configuration"
	}
	return "buffer " + strconv.Itoa(int(bt))
}

func mapName(mt MapType) string {
	switch mt {
	case MapTypeHTTPRequestHeaders:
		return "http_request_headers"
	case MapTypeHTTPRequestTrailers:
		return "http_request_trailers"
	case MapTypeHTTPResponseHeaders:
		return "http_response_headers"
	case MapTypeHTTPResponseTrailers:
		return "http_response_trailers"
	case MapTypeHTTPCallResponseHeaders:
		return "http_call_response_headers"
	case MapTypeHTTPCallResponseTrailers:
		return "http_call_response_trailers"
	}
	return "map " + strconv.Itoa(int(mt))
}
