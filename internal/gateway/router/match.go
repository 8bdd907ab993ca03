package router

import (
	"net/http"
	"strings"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// Message is a request or response as the filters see it: headers with
// pseudo-headers first (":method", ":path", ":authority" or ":status"),
// lower-case names, the whole body and the trailers.
type Message struct {
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// Get returns the first value of header k (lower case).
func (m *Message) Get(k string) (string, bool) {
	for _, kv := range m.Headers {
		if kv[0] == k {
			return kv[1], true
		}
	}
	return "", false
}

// getAll joins every value of k with ",", as Envoy matches multi-valued
// headers.
func (m *Message) getAll(k string) (string, bool) {
	var vals []string
	for _, kv := range m.Headers {
		if kv[0] == k {
			vals = append(vals, kv[1])
		}
	}
	return strings.Join(vals, ","), len(vals) > 0
}

// Select returns the first route of rc matching req, as Envoy's route
// table does: the virtual host by :authority (exact, then suffix and
// prefix wildcards, then "*"), then its routes in order.
func Select(rc *xdsconfig.RouteConfig, req *Message) *xdsconfig.Route {
	if rc == nil {
		return nil
	}
	host, _ := req.Get(":authority")
	vh := virtualHost(rc, strings.ToLower(host))
	if vh == nil {
		return nil
	}
	path, _ := req.Get(":path")
	for i := range vh.Routes {
		if matches(&vh.Routes[i].Match, path, req) {
			return &vh.Routes[i]
		}
	}
	return nil
}

func virtualHost(rc *xdsconfig.RouteConfig, host string) *xdsconfig.VirtualHost {
	bare := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		bare = host[:i]
	}
	var best *xdsconfig.VirtualHost
	bestLen, bestKind := -1, 4 // kind: 0 exact, 1 suffix, 2 prefix, 3 any
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			kind, ok := 4, false
			switch {
			case d == host || d == bare:
				kind, ok = 0, true
			case d == "*":
				kind, ok = 3, true
			case strings.HasPrefix(d, "*"):
				kind, ok = 1, strings.HasSuffix(bare, d[1:]) && len(bare) > len(d)-1
			case strings.HasSuffix(d, "*"):
				kind, ok = 2, strings.HasPrefix(bare, d[:len(d)-1]) && len(bare) > len(d)-1
			}
			if ok && (kind < bestKind || kind == bestKind && len(d) > bestLen) {
				best, bestKind, bestLen = vh, kind, len(d)
			}
		}
	}
	return best
}

func matches(m *xdsconfig.Match, path string, req *Message) bool {
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	switch {
	case m.Path != "":
		if p != m.Path {
			return false
		}
	case m.SeparatedPrefix != "":
		rest, ok := strings.CutPrefix(p, m.SeparatedPrefix)
		if !ok || (rest != "" && rest[0] != '/') {
			return false
		}
	case m.Regex != nil:
		if !m.Regex.MatchString(p) {
			return false
		}
	default:
		if !strings.HasPrefix(p, m.Prefix) {
			return false
		}
	}
	if m.GRPC {
		ct, _ := req.Get("content-type")
		if !strings.HasPrefix(ct, "application/grpc") {
			return false
		}
	}
	for i := range m.Headers {
		if !headerMatches(&m.Headers[i], req) {
			return false
		}
	}
	return true
}

func headerMatches(h *xdsconfig.HeaderMatch, req *Message) bool {
	v, present := req.getAll(h.Name)
	var ok bool
	switch {
	case h.Present != nil:
		ok = present == *h.Present
	case h.String != nil:
		ok = present && stringMatches(h.String, v)
	}
	return ok != h.Invert
}

func stringMatches(s *xdsconfig.StringMatch, v string) bool {
	cmp := func(a string) (string, string) {
		if s.IgnoreCase {
			return strings.ToLower(v), strings.ToLower(a)
		}
		return v, a
	}
	switch {
	case s.Exact != nil:
		x, y := cmp(*s.Exact)
		return x == y
	case s.Prefix != nil:
		x, y := cmp(*s.Prefix)
		return strings.HasPrefix(x, y)
	case s.Suffix != nil:
		x, y := cmp(*s.Suffix)
		return strings.HasSuffix(x, y)
	case s.Contains != nil:
		x, y := cmp(*s.Contains)
		return strings.Contains(x, y)
	case s.Regex != nil:
		return s.Regex.MatchString(v)
	}
	return false
}

// canonicalKey is http.CanonicalHeaderKey with the names of gRPC and OIP
// answers looked up rather than built per response.
func canonicalKey(k string) string {
	switch k {
	case "content-type":
		return "Content-Type"
	case "grpc-status":
		return "Grpc-Status"
	case "grpc-message":
		return "Grpc-Message"
	case "grpc-encoding":
		return "Grpc-Encoding"
	case "grpc-accept-encoding":
		return "Grpc-Accept-Encoding"
	case "date":
		return "Date"
	case "x-envoy-upstream-service-time":
		return "X-Envoy-Upstream-Service-Time"
	case "x-request-id":
		return "X-Request-Id"
	}
	return http.CanonicalHeaderKey(k)
}

// trailerKey is the response header key that declares trailer k
// (http.TrailerPrefix and its canonical name).
func trailerKey(k string) string {
	switch k {
	case "grpc-status":
		return http.TrailerPrefix + "Grpc-Status"
	case "grpc-message":
		return http.TrailerPrefix + "Grpc-Message"
	}
	return http.TrailerPrefix + http.CanonicalHeaderKey(k)
}

// lowerKey lower-cases a header name as Go's servers and clients
// canonicalize it ("Content-Type"). The names of every gRPC and OIP call
// are looked up rather than lower-cased, which would allocate per header
// per request.
func lowerKey(k string) string {
	switch k {
	case "Content-Type":
		return "content-type"
	case "Te":
		return "te"
	case "User-Agent":
		return "user-agent"
	case "Grpc-Timeout":
		return "grpc-timeout"
	case "Grpc-Accept-Encoding":
		return "grpc-accept-encoding"
	case "Grpc-Encoding":
		return "grpc-encoding"
	case "Grpc-Status":
		return "grpc-status"
	case "Grpc-Message":
		return "grpc-message"
	case "Content-Length":
		return "content-length"
	case "Accept":
		return "accept"
	case "Accept-Encoding":
		return "accept-encoding"
	case "Date":
		return "date"
	case "Traceparent":
		return "traceparent"
	case "X-Request-Id":
		return "x-request-id"
	case "X-Maestro-Model":
		return "x-maestro-model"
	case "X-Forwarded-Proto":
		return "x-forwarded-proto"
	case "X-Envoy-Expected-Rq-Timeout-Ms":
		return "x-envoy-expected-rq-timeout-ms"
	}
	return strings.ToLower(k)
}
