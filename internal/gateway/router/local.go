package router

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// LocalReply is an answer the gateway (or a filter) makes itself. For a
// gRPC request Envoy turns it into a trailers-only response: HTTP 200,
// grpc-status mapped from the HTTP code, grpc-message from the body.
type LocalReply struct {
	Status  int
	Body    string
	Headers [][2]string
	// GRPCStatus overrides the mapped gRPC status when >= 0.
	GRPCStatus int
}

// Envoy's local reply texts.
const (
	bodyNoHealthy   = "no healthy upstream"
	bodyTimeout     = "upstream request timeout"
	bodyOverflow    = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	bodyConnectFail = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyReset       = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	bodyTooLarge    = "Payload Too Large"
	bodyFaultAbort  = "fault filter abort"
)

// httpToGRPC is Envoy's Grpc::Utility::httpToGrpcStatus.
func httpToGRPC(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcToHTTP is Envoy's Grpc::Utility::grpcToHttpStatus, used to feed a
// gRPC answer's status to outlier detection and retries.
func grpcToHTTP(code int) int {
	switch code {
	case 0:
		return 200
	case 1:
		return 499
	case 3, 9, 11:
		return 400
	case 4:
		return 504
	case 5:
		return 404
	case 6, 10:
		return 409
	case 7:
		return 403
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 16:
		return 401
	}
	return 500
}

func writeLocal(w http.ResponseWriter, grpcReq bool, lr *LocalReply) int {
	h := w.Header()
	for _, kv := range lr.Headers {
		if !strings.HasPrefix(kv[0], ":") {
			h.Add(kv[0], kv[1])
		}
	}
	if grpcReq {
		st := lr.GRPCStatus
		if st < 0 {
			st = httpToGRPC(lr.Status)
		}
		h.Set("content-type", "application/grpc")
		h.Set("grpc-status", strconv.Itoa(st))
		if lr.Body != "" {
			h.Set("grpc-message", grpcEncode(lr.Body))
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	}
	if lr.Body != "" && h.Get("content-type") == "" {
		h.Set("content-type", "text/plain")
	}
	h.Set("content-length", strconv.Itoa(len(lr.Body)))
	w.WriteHeader(lr.Status)
	_, _ = w.Write([]byte(lr.Body))
	return lr.Status
}

// grpcEncode percent-encodes a grpc-message as the gRPC spec asks.
func grpcEncode(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
}
