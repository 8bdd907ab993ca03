package proxywasm

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Log writes msg at level through proxy_log.
func Log(level LogLevel, msg string) {
	proxyLog(uint32(level), strPtr(msg), uint32(len(msg)))
}

// LogTrace logs at trace level.
func LogTrace(msg string) { Log(LogLevelTrace, msg) }

// LogDebug logs at debug level.
func LogDebug(msg string) { Log(LogLevelDebug, msg) }

// LogInfo logs at info level.
func LogInfo(msg string) { Log(LogLevelInfo, msg) }

// LogWarn logs at warn level.
func LogWarn(msg string) { Log(LogLevelWarn, msg) }

// LogError logs at error level.
func LogError(msg string) { Log(LogLevelError, msg) }

// LogCritical logs at critical level.
func LogCritical(msg string) { Log(LogLevelCritical, msg) }

// Logf formats and logs at level.
func Logf(level LogLevel, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

// GetBuffer reads up to maxSize bytes from start of a host buffer.
//
// # Errors
// ErrNotFound when the buffer does not exist in this callback.
func GetBuffer(bt BufferType, start, maxSize int) ([]byte, error) {
	return getBuffer(bt, uint32(start), uint32(maxSize))
}

func getBuffer(bt BufferType, start, maxSize uint32) ([]byte, error) {
	p, n := vm.retSlots()
	if err := Status(proxyGetBufferBytes(uint32(bt), start, maxSize, p, n)).Err(); err != nil {
		return nil, hostError("get buffer", bufferName(bt), err)
	}
	return vm.claim(*p, *n), nil
}

func setBuffer(bt BufferType, start, length uint32, data []byte) error {
	if err := Status(proxySetBufferBytes(uint32(bt), start, length, ptr(data), uint32(len(data)))).Err(); err != nil {
		return hostError("set buffer", bufferName(bt), err)
	}
	return nil
}

// ReplaceBuffer replaces the whole content of a host buffer.
func ReplaceBuffer(bt BufferType, data []byte) error { return setBuffer(bt, 0, bufferWhole, data) }

// AppendBuffer appends data to a host buffer.
func AppendBuffer(bt BufferType, data []byte) error { return setBuffer(bt, bufferWhole, 0, data) }

// PrependBuffer inserts data at the start of a host buffer.
func PrependBuffer(bt BufferType, data []byte) error { return setBuffer(bt, 0, 0, data) }

// GetVMConfiguration returns the VM configuration (valid in OnVMStart).
func GetVMConfiguration() ([]byte, error) {
	return getBuffer(BufferTypeVMConfiguration, 0, bufferWhole)
}

// GetPluginConfiguration returns the plugin configuration (valid in
// OnPluginStart).
func GetPluginConfiguration() ([]byte, error) {
	return getBuffer(BufferTypePluginConfiguration, 0, bufferWhole)
}

// GetHTTPRequestBody reads the (buffered) request body.
func GetHTTPRequestBody(start, maxSize int) ([]byte, error) {
	return GetBuffer(BufferTypeHTTPRequestBody, start, maxSize)
}

// ReplaceHTTPRequestBody replaces the buffered request body.
func ReplaceHTTPRequestBody(body []byte) error { return ReplaceBuffer(BufferTypeHTTPRequestBody, body) }

// GetHTTPResponseBody reads the (buffered) response body.
func GetHTTPResponseBody(start, maxSize int) ([]byte, error) {
	return GetBuffer(BufferTypeHTTPResponseBody, start, maxSize)
}

// ReplaceHTTPResponseBody replaces the buffered response body.
func ReplaceHTTPResponseBody(body []byte) error {
	return ReplaceBuffer(BufferTypeHTTPResponseBody, body)
}

// GetHTTPCallResponseBody reads an HTTP callout's response body (valid in
// its HTTPCallCallback).
func GetHTTPCallResponseBody(start, maxSize int) ([]byte, error) {
	return GetBuffer(BufferTypeHTTPCallResponseBody, start, maxSize)
}

// GetHeaderMap returns every pair of a header map, in order.
func GetHeaderMap(mt MapType) ([][2]string, error) { return AppendHeaderMap(nil, mt) }

// AppendHeaderMap appends every pair of a header map to dst, in order: a
// caller that reads the headers on every request can keep one slice for
// them, sparing an allocation (slow inside wasm) each time.
func AppendHeaderMap(dst [][2]string, mt MapType) ([][2]string, error) {
	p, n := vm.retSlots()
	if err := Status(proxyGetHeaderMapPairs(uint32(mt), p, n)).Err(); err != nil {
		return nil, hostError("get header map", mapName(mt), err)
	}
	// The claimed buffer is this call's alone and never written again:
	// the pairs share it rather than copying every name and value.
	pairs, err := deserializeMap(dst, vm.claim(*p, *n), true)
	if err != nil {
		return nil, hostError("get header map", mapName(mt), err)
	}
	return pairs, nil
}

// SetHeaderMap replaces a whole header map.
func SetHeaderMap(mt MapType, pairs [][2]string) error {
	b, _ := vm.hostMaps(pairs, nil)
	if err := Status(proxySetHeaderMapPairs(uint32(mt), ptr(b), uint32(len(b)))).Err(); err != nil {
		return hostError("set header map", mapName(mt), err)
	}
	return nil
}

// GetHeader returns one header's value.
//
// # Errors
// ErrNotFound when the header is absent.
func GetHeader(mt MapType, key string) (string, error) {
	v, found, err := LookupHeader(mt, key)
	if err == nil && !found {
		return "", hostError("get header", key, ErrNotFound)
	}
	return v, err
}

// LookupHeader returns one header's value, found false (and no error)
// when it is absent. Filters read headers that are often absent on every
// request; unlike GetHeader it builds no error value for them.
func LookupHeader(mt MapType, key string) (value string, found bool, err error) {
	p, n := vm.retSlots()
	switch st := Status(proxyGetHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), p, n)); st {
	case StatusOK:
	case StatusNotFound:
		return "", false, nil
	default:
		return "", false, hostError("get header", key, st.Err())
	}
	// The claimed buffer is this call's alone and never written again, so
	// the string shares it instead of copying: one allocation fewer per
	// header read, and filters read headers on every request.
	return sharedString(vm.claim(*p, *n)), true, nil
}

// AddHeader adds a value to a header, keeping existing values.
func AddHeader(mt MapType, key, value string) error {
	st := proxyAddHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value)))
	if err := Status(st).Err(); err != nil {
		return hostError("add header", key, err)
	}
	return nil
}

// ReplaceHeader sets a header to one value.
func ReplaceHeader(mt MapType, key, value string) error {
	st := proxyReplaceHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value)))
	if err := Status(st).Err(); err != nil {
		return hostError("replace header", key, err)
	}
	return nil
}

// RemoveHeader deletes a header.
func RemoveHeader(mt MapType, key string) error {
	if err := Status(proxyRemoveHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)))).Err(); err != nil {
		return hostError("remove header", key, err)
	}
	return nil
}

// GetHTTPRequestHeaders returns the request headers (pseudo-headers first).
func GetHTTPRequestHeaders() ([][2]string, error) { return GetHeaderMap(MapTypeHTTPRequestHeaders) }

// GetHTTPRequestHeader returns one request header.
func GetHTTPRequestHeader(key string) (string, error) {
	return GetHeader(MapTypeHTTPRequestHeaders, key)
}

// ReplaceHTTPRequestHeader sets one request header.
func ReplaceHTTPRequestHeader(key, value string) error {
	return ReplaceHeader(MapTypeHTTPRequestHeaders, key, value)
}

// GetHTTPResponseHeaders returns the response headers.
func GetHTTPResponseHeaders() ([][2]string, error) {
	return GetHeaderMap(MapTypeHTTPResponseHeaders)
}

// GetHTTPResponseHeader returns one response header.
func GetHTTPResponseHeader(key string) (string, error) {
	return GetHeader(MapTypeHTTPResponseHeaders, key)
}

// ReplaceHTTPResponseHeader sets one response header.
func ReplaceHTTPResponseHeader(key, value string) error {
	return ReplaceHeader(MapTypeHTTPResponseHeaders, key, value)
}

// GetHTTPResponseTrailer returns one response trailer (valid in
// OnHTTPResponseTrailers).
func GetHTTPResponseTrailer(key string) (string, error) {
	return GetHeader(MapTypeHTTPResponseTrailers, key)
}

// GetHTTPCallResponseHeaders returns an HTTP callout's response headers,
// including ":status" (valid in its HTTPCallCallback).
func GetHTTPCallResponseHeaders() ([][2]string, error) {
	return GetHeaderMap(MapTypeHTTPCallResponseHeaders)
}

// GetHTTPCallResponseTrailers returns an HTTP callout's response trailers.
func GetHTTPCallResponseTrailers() ([][2]string, error) {
	return GetHeaderMap(MapTypeHTTPCallResponseTrailers)
}

// GetProperty reads a host property such as ["request", "path"].
//
// # Errors
// ErrNotFound when the host has no such property.
func GetProperty(path ...string) ([]byte, error) {
	return GetPropertyAt(NewPropertyPath(path...))
}

// PropertyPath is a property path in the form the host reads, built once
// with NewPropertyPath for a property read on every request.
type PropertyPath []byte

// NewPropertyPath serializes a property path (["xds", "route_name"]).
func NewPropertyPath(path ...string) PropertyPath { return SerializePropertyPath(path) }

// GetPropertyAt is GetProperty for a path serialized beforehand.
//
// # Errors
// ErrNotFound when the host has no such property.
func GetPropertyAt(path PropertyPath) ([]byte, error) {
	p, n := vm.retSlots()
	if err := Status(proxyGetProperty(ptr(path), uint32(len(path)), p, n)).Err(); err != nil {
		return nil, hostError("get property", strings.Join(DeserializePropertyPath(path), "."), err)
	}
	return vm.claim(*p, *n), nil
}

// LookupPropertyAt reads a property as a string, found false (and no
// error) when the host has none. Like LookupHeader it shares the host's
// answer rather than copying it: filters read the route on every request.
func LookupPropertyAt(path PropertyPath) (value string, found bool, err error) {
	p, n := vm.retSlots()
	switch st := Status(proxyGetProperty(ptr(path), uint32(len(path)), p, n)); st {
	case StatusOK:
	case StatusNotFound:
		return "", false, nil
	default:
		return "", false, hostError("get property", strings.Join(DeserializePropertyPath(path), "."), st.Err())
	}
	return sharedString(vm.claim(*p, *n)), true, nil
}

// sharedString is b as a string without a copy, for a buffer claimed from
// the host, which nothing writes again.
func sharedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// SetProperty writes a host property.
func SetProperty(path []string, value []byte) error {
	b := SerializePropertyPath(path)
	if err := Status(proxySetProperty(ptr(b), uint32(len(b)), ptr(value), uint32(len(value)))).Err(); err != nil {
		return hostError("set property", strings.Join(path, "."), err)
	}
	return nil
}

// NoGRPCStatus is the grpcStatus of SendHTTPResponse for a non-gRPC reply.
const NoGRPCStatus int32 = -1

// SendHTTPResponse answers the current stream locally; the host stops
// forwarding it. The calling callback should return ActionPause.
func SendHTTPResponse(statusCode uint32, headers [][2]string, body []byte, grpcStatus int32) error {
	h, _ := vm.hostMaps(headers, nil)
	st := proxySendLocalResponse(statusCode, nil, 0, ptr(body), uint32(len(body)), ptr(h), uint32(len(h)), grpcStatus)
	if err := Status(st).Err(); err != nil {
		return hostError("send local response", strconv.Itoa(int(statusCode)), err)
	}
	return nil
}

// ResumeHTTPRequest continues a request paused by ActionPause.
func ResumeHTTPRequest() error {
	return Status(proxyContinueStream(uint32(StreamTypeRequest))).Err()
}

// ResumeHTTPResponse continues a response paused by ActionPause.
func ResumeHTTPResponse() error {
	return Status(proxyContinueStream(uint32(StreamTypeResponse))).Err()
}

// DispatchHTTPCall sends an HTTP request to the cluster (Envoy's cluster
// name) and returns at once; cb runs in a later callback with the answer.
// headers must carry ":method", ":path" and ":authority".
//
// # Errors
// ErrBadArgument for an unknown cluster or missing pseudo-headers.
func DispatchHTTPCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeout time.Duration, cb HTTPCallCallback) (uint32, error) {
	h, t := vm.hostMaps(headers, trailers)
	idp, _ := vm.retSlots()
	st := proxyHTTPCall(strPtr(cluster), uint32(len(cluster)), ptr(h), uint32(len(h)), ptr(body), uint32(len(body)),
		ptr(t), uint32(len(t)), millis(timeout), idp)
	if err := Status(st).Err(); err != nil {
		return 0, hostError("http call to cluster", cluster, err)
	}
	id := *idp
	vm.callouts[id] = callout{caller: vm.active, http: cb}
	return id, nil
}

// DispatchGRPCCall sends a unary gRPC request (a serialized message) to
// service/method on the cluster; cb runs in a later callback.
func DispatchGRPCCall(cluster, service, method string, metadata [][2]string, message []byte,
	timeout time.Duration, cb GRPCCallCallback) (uint32, error) {
	md, _ := vm.hostMaps(metadata, nil)
	idp, _ := vm.retSlots()
	st := proxyGRPCCall(strPtr(cluster), uint32(len(cluster)), strPtr(service), uint32(len(service)),
		strPtr(method), uint32(len(method)), ptr(md), uint32(len(md)), ptr(message), uint32(len(message)),
		millis(timeout), idp)
	if err := Status(st).Err(); err != nil {
		return 0, hostError("grpc call to cluster", cluster+" "+service+"/"+method, err)
	}
	id := *idp
	vm.callouts[id] = callout{caller: vm.active, grpc: cb}
	return id, nil
}

// CancelGRPCCall abandons a gRPC call; its callback will not run.
func CancelGRPCCall(id uint32) error {
	delete(vm.callouts, id)
	return Status(proxyGRPCCancel(id)).Err()
}

func millis(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	if ms := d.Milliseconds(); ms < int64(^uint32(0)) {
		return uint32(max(ms, 1))
	}
	return ^uint32(0)
}

// SetTickPeriod asks the host to call OnTick every period (0 stops it).
func SetTickPeriod(period time.Duration) error {
	return Status(proxySetTickPeriodMilliseconds(millis(period))).Err()
}

// PluginDone tells the host a plugin that deferred OnPluginDone is finished.
func PluginDone() error { return Status(proxyDone()).Err() }

// GetSharedData reads a VM-wide shared value and its CAS token.
//
// # Errors
// ErrNotFound when the key has never been set.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	p, n := vm.retSlots()
	if err := Status(proxyGetSharedData(strPtr(key), uint32(len(key)), p, n, &cas)).Err(); err != nil {
		return nil, 0, hostError("get shared data", key, err)
	}
	return vm.claim(*p, *n), cas, nil
}

// SetSharedData writes a VM-wide shared value. A cas of 0 writes
// unconditionally; otherwise the write only happens if the value is still
// at that CAS token.
//
// # Errors
// ErrCasMismatch when another writer got there first: re-read and retry.
func SetSharedData(key string, value []byte, cas uint32) error {
	st := proxySetSharedData(strPtr(key), uint32(len(key)), ptr(value), uint32(len(value)), cas)
	if err := Status(st).Err(); err != nil {
		return hostError("set shared data", key, err)
	}
	return nil
}
