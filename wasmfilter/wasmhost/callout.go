package wasmhost

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero/api"
	"google.golang.org/grpc/status"

	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// statusBrokenConnection is WasmResult::BrokenConnection, which the
// binding does not name.
const statusBrokenConnection pw.Status = 11

// calloutResult is a finished callout waiting for delivery to the guest.
type calloutResult struct {
	token    uint32
	grpc     bool
	failed   bool // HTTP: no response (timeout, reset); reported as 0/0/0
	headers  [][2]string
	body     []byte
	trailers [][2]string
	code     uint32 // gRPC status
	msg      string
}

// startCallout runs fn on a goroutine bound to the VM and reports its
// result on vm.results; the caller holds vm.mu.
func (vm *VM) startCallout(timeout time.Duration, fn func(ctx context.Context) calloutResult) uint32 {
	vm.nextToken++
	token := vm.nextToken
	vm.inflight++
	vm.wg.Add(1)
	go func() {
		defer vm.wg.Done()
		ctx, cancel := vm.ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
		r := fn(ctx)
		cancel()
		r.token = token
		select {
		case vm.results <- r:
		case <-vm.ctx.Done():
		}
	}()
	return token
}

// hostHTTPCall follows Envoy's Context::httpCall: a negative timeout, a
// cluster the node lacks, or a request without :path, :method and
// :authority is BadArgument; a zero timeout means none.
func hostHTTPCall(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	cluster, ok1 := readString(m, u32(p[0]), u32(p[1]))
	hb, ok2 := read(m, u32(p[2]), u32(p[3]))
	body, ok3 := read(m, u32(p[4]), u32(p[5]))
	tb, ok4 := read(m, u32(p[6]), u32(p[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return pw.StatusInvalidMemoryAccess
	}
	headers, err1 := pw.DeserializeMap(hb)
	trailers, err2 := pw.DeserializeMap(tb)
	if err1 != nil || err2 != nil {
		return pw.StatusBadArgument
	}
	if int32(u32(p[8])) < 0 {
		return pw.StatusBadArgument
	}
	if !vm.upstreams.HasCluster(cluster) {
		vm.logf(pw.LogLevelWarn, vm.effective, "wasmhost: http call to unknown cluster "+cluster)
		return pw.StatusBadArgument
	}
	for _, k := range []string{":method", ":path", ":authority"} {
		if _, ok := headerValue(headers, k); !ok {
			return pw.StatusBadArgument
		}
	}
	headers = lower(headers)
	if len(body) > 0 {
		headers = replaceHeader(headers, "content-length", itoa(len(body)))
	}
	req := &Request{Headers: headers, Body: body, Trailers: lower(trailers)}
	up := vm.upstreams
	token := vm.startCallout(time.Duration(u32(p[8]))*time.Millisecond, func(ctx context.Context) calloutResult {
		resp, err := up.HTTP(ctx, cluster, req)
		if err != nil {
			return calloutResult{failed: true}
		}
		return calloutResult{headers: resp.Headers, body: resp.Body, trailers: resp.Trailers}
	})
	return okIf(m.Memory().WriteUint32Le(u32(p[9]), token))
}

// hostGRPCCall follows Envoy's Context::grpcCall: a cluster the node lacks
// is ParseFailure (Envoy keeps that code from ABI 0.1 for compatibility).
func hostGRPCCall(_ context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	cluster, ok1 := readString(m, u32(p[0]), u32(p[1]))
	service, ok2 := readString(m, u32(p[2]), u32(p[3]))
	method, ok3 := readString(m, u32(p[4]), u32(p[5]))
	mdb, ok4 := read(m, u32(p[6]), u32(p[7]))
	msg, ok5 := read(m, u32(p[8]), u32(p[9]))
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return pw.StatusInvalidMemoryAccess
	}
	md, err := pw.DeserializeMap(mdb)
	if err != nil {
		return pw.StatusParseFailure
	}
	if !vm.upstreams.HasCluster(cluster) {
		vm.logf(pw.LogLevelWarn, vm.effective, "wasmhost: grpc call to unknown cluster "+cluster)
		return pw.StatusParseFailure
	}
	call := &GRPCCall{Service: service, Method: method, Metadata: md, Message: msg}
	up := vm.upstreams
	token := vm.startCallout(time.Duration(u32(p[10]))*time.Millisecond, func(ctx context.Context) calloutResult {
		out, err := up.GRPC(ctx, cluster, call)
		if err != nil {
			st := status.Convert(err)
			return calloutResult{grpc: true, code: uint32(st.Code()), msg: st.Message()}
		}
		return calloutResult{grpc: true, body: out}
	})
	return okIf(m.Memory().WriteUint32Le(u32(p[11]), token))
}

func hostGRPCCancel(_ context.Context, vm *VM, _ api.Module, p []uint64) pw.Status {
	token := u32(p[0])
	if token == 0 || token > vm.nextToken {
		return pw.StatusNotFound
	}
	if vm.cancelled == nil {
		vm.cancelled = map[uint32]bool{}
	}
	vm.cancelled[token] = true
	return pw.StatusOK
}

func hostGetStatus(ctx context.Context, vm *VM, m api.Module, p []uint64) pw.Status {
	if !m.Memory().WriteUint32Le(u32(p[0]), vm.grpcStatus.code) {
		return pw.StatusInvalidMemoryAccess
	}
	return vm.returnBytes(ctx, m, []byte(vm.grpcStatus.msg), u32(p[1]), u32(p[2]))
}

// deliver runs the guest callback for a finished callout, on the root
// context as Envoy does; the guest makes the caller effective itself.
// Streams the callback resumed then get their held data.
func (vm *VM) deliver(r calloutResult) error {
	if vm.cancelled[r.token] {
		delete(vm.cancelled, r.token)
		return nil
	}
	vm.effective = vm.rootID
	vm.callResp = &r
	root := uint64(vm.rootID)
	var err error
	switch {
	case !r.grpc && r.failed:
		// Envoy reports a failed call as BrokenConnection with "reset".
		vm.grpcStatus.code, vm.grpcStatus.msg = uint32(statusBrokenConnection), "reset"
		_, err = vm.call(expHTTPCallResponse, root, uint64(r.token), 0, 0, 0)
	case !r.grpc:
		_, err = vm.call(expHTTPCallResponse, root, uint64(r.token),
			uint64(len(r.headers)), uint64(len(r.body)), uint64(len(r.trailers)))
	case r.code == 0:
		_, err = vm.call(expGRPCReceive, root, uint64(r.token), uint64(len(r.body)))
	default:
		vm.grpcStatus.code, vm.grpcStatus.msg = r.code, r.msg
		_, err = vm.call(expGRPCClose, root, uint64(r.token), uint64(r.code))
	}
	vm.callResp = nil
	if err != nil {
		return err
	}
	return vm.afterCall()
}
