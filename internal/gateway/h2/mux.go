package h2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Mux serves one listener: connections that open with the HTTP/2 client
// preface go to H2, the others to HTTP1, as Envoy's AUTO codec does.
type Mux struct {
	// HTTP1 serves HTTP/1.1; nil closes such connections.
	HTTP1 *http.Server
	// H2 serves h2c; nil hands preface connections to HTTP1 too.
	H2 *Server

	once sync.Once
	ln   net.Listener
	h1   *connListener
}

// Serve accepts connections on ln until it is closed.
func (m *Mux) Serve(ln net.Listener) error {
	m.init(ln)
	if m.HTTP1 != nil {
		go func() { _ = m.HTTP1.Serve(m.h1) }()
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go m.route(nc)
	}
}

func (m *Mux) init(ln net.Listener) {
	m.once.Do(func() {
		m.ln = ln
		m.h1 = &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
		if ln != nil {
			m.h1.addr = ln.Addr()
		}
	})
}

// route reads as much of the preface as the connection's first bytes
// match and hands the connection on.
func (m *Mux) route(nc net.Conn) {
	var buf [len(ClientPreface)]byte
	_ = nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	n, match := 0, true
	for n < len(buf) && match {
		k, err := nc.Read(buf[n:])
		n += k
		match = string(buf[:n]) == ClientPreface[:n]
		if err != nil {
			if n == 0 {
				_ = nc.Close()
				return
			}
			match = false
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	if match && m.H2 != nil {
		m.H2.ServeConn(nc)
		return
	}
	if m.HTTP1 == nil {
		_ = nc.Close()
		return
	}
	pc := &prefixConn{Conn: nc, prefix: append([]byte(nil), buf[:n]...)}
	select {
	case m.h1.conns <- pc:
	case <-m.h1.done:
		_ = nc.Close()
	}
}

// Shutdown stops accepting, lets requests in flight finish and closes the
// connections; past ctx's end they are closed at once.
func (m *Mux) Shutdown(ctx context.Context) error {
	m.init(nil)
	if m.ln != nil {
		_ = m.ln.Close()
	}
	// Both drain at once: the h2c clients get their GOAWAY while the
	// HTTP/1.1 requests finish.
	var g errgroup.Group
	if m.HTTP1 != nil {
		g.Go(func() error { return m.HTTP1.Shutdown(ctx) })
	}
	if m.H2 != nil {
		g.Go(func() error { return m.H2.Shutdown(ctx) })
	}
	err := g.Wait()
	m.h1.close()
	return err
}

// Close closes the listener and every connection.
func (m *Mux) Close() error {
	m.init(nil)
	if m.ln != nil {
		_ = m.ln.Close()
	}
	m.h1.close()
	if m.HTTP1 != nil {
		_ = m.HTTP1.Close()
	}
	if m.H2 != nil {
		m.H2.Close()
	}
	return nil
}

// connListener hands the mux's HTTP/1.1 connections to an http.Server.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *connListener) Close() error { l.close(); return nil }

func (l *connListener) Addr() net.Addr { return l.addr }

// prefixConn replays the bytes read while looking for the preface.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
