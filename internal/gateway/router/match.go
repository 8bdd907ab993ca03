package router

import (
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
	case m.Regex != nil:
		if !m.Regex.MatchString(p) {
			return false
		}
	case m.SeparatedPrefix != "":
		if p != m.SeparatedPrefix && !strings.HasPrefix(p, m.SeparatedPrefix+"/") {
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
