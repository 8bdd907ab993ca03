package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// routes is the protocol's REST API, Triton's repository extension and
// /metrics; admin routes may load and unload models.
func (s *Server) routes(admin bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v2/health/ready", s.httpServerReady)
	mux.HandleFunc("GET /v2", s.httpServerMetadata)
	mux.HandleFunc("GET /v2/models/{model}", s.httpModelMetadata)
	mux.HandleFunc("GET /v2/models/{model}/versions/{version}", s.httpModelMetadata)
	mux.HandleFunc("GET /v2/models/{model}/ready", s.httpModelReady)
	mux.HandleFunc("GET /v2/models/{model}/versions/{version}/ready", s.httpModelReady)
	mux.HandleFunc("POST /v2/models/{model}/infer", s.httpInfer)
	mux.HandleFunc("POST /v2/models/{model}/versions/{version}/infer", s.httpInfer)
	mux.HandleFunc("POST /v2/repository/index", s.httpIndex)
	mux.HandleFunc("POST /v2/repository/models/{model}/load", func(w http.ResponseWriter, r *http.Request) { s.httpLoad(w, r, admin) })
	mux.HandleFunc("POST /v2/repository/models/{model}/unload", func(w http.ResponseWriter, r *http.Request) { s.httpUnload(w, r, admin) })
	mux.Handle("GET /metrics", telemetry.MetricsHandler(s.cfg.Metrics))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServerHeader, s.cfg.Name)
		mux.ServeHTTP(w, r)
	})
}

// httpStatus maps a gRPC code to the protocol's HTTP status.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // client closed request, as nginx and Envoy report it
	case codes.ResourceExhausted:
		return http.StatusRequestEntityTooLarge
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": "..."}, as the protocol's REST API does.
func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(statusError(err))
	code := httpStatus(st.Code())
	switch {
	case errors.Is(err, errOverBudget):
		// Memory held by requests in flight is released within a request's
		// time: a prompt retry is likely to fit.
		w.Header().Set("Retry-After", "1")
		code = http.StatusTooManyRequests
	case errors.Is(err, errBodyTimeout):
		code = http.StatusRequestTimeout
	}
	writeJSON(w, code, map[string]string{"error": st.Message()})
}

func (s *Server) httpServerReady(w http.ResponseWriter, _ *http.Request) {
	if !s.ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) httpServerMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": s.cfg.Name, "version": s.cfg.Version, "extensions": extensions})
}

type jsonTensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) httpModelMetadata(w http.ResponseWriter, r *http.Request) {
	info, err := s.repo.Info(r.PathValue("model"), r.PathValue("version"))
	if err == nil {
		err = info.Err
	}
	if err != nil {
		writeError(w, err)
		return
	}
	conv := func(specs []runtime.TensorSpec) []jsonTensorMetadata {
		out := make([]jsonTensorMetadata, len(specs))
		for i, s := range specs {
			out[i] = jsonTensorMetadata{Name: s.Name, Datatype: string(s.Datatype), Shape: s.Shape}
		}
		return out
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":     info.Name,
		"versions": info.Versions,
		"platform": platform(info.Config),
		"inputs":   conv(info.Signature.Inputs),
		"outputs":  conv(info.Signature.Outputs),
	})
}

// httpModelReady answers 200 when the model serves (loading it if needed)
// and 400 with the reason when it cannot, as Triton does.
func (s *Server) httpModelReady(w http.ResponseWriter, r *http.Request) {
	_, err := s.repo.Get(r.Context(), r.PathValue("model"), r.PathValue("version"))
	switch {
	case err == nil:
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, repository.ErrUnavailable):
		w.Header().Set(reasonHeader, oneLine(err.Error()))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		writeError(w, err)
	}
}

func (s *Server) httpInfer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res := s.budget.reserve("http")
	defer res.release()
	resp, model, ver, err := s.inferJSON(w, r, res)
	s.observe("http", model, ver, start, err)
	if err != nil {
		writeError(w, err)
		return
	}
	writeInferResponse(w, resp)
}

// inferJSON decodes the body as a stream, bounded by the model's declared
// inputs and by res, runs the model and encodes the outputs.
func (s *Server) inferJSON(w http.ResponseWriter, r *http.Request, res *reservation) (*tensor.JSONResponse, string, string, error) {
	l, err := s.repo.Get(r.Context(), r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		model, ver := failedLabels(err, r.PathValue("model"))
		return nil, model, ver, err
	}
	limit := int64(s.cfg.MaxRequestBytes)
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close") // rather than read the body
		return nil, l.Name, l.Version, fmt.Errorf("request body of %d bytes is over the limit of %d: %w", r.ContentLength, limit, errTooLarge)
	}
	bodyBytes := limit
	if r.ContentLength >= 0 {
		bodyBytes = r.ContentLength
	}
	body := s.newBodyReader(w, r)
	s.readers.add(body)
	defer func() {
		if body.unread() {
			w.Header().Set("Connection", "close")
		}
	}()
	req, err := tensor.DecodeJSONRequest(body, tensor.DecodeOptions{
		BodyBytes: bodyBytes,
		Check: func(name string, dt runtime.Datatype, shape []int64) error {
			return checkInput(l, name, dt, shape)
		},
		Reserve: res.take,
	})
	s.readers.remove(body)
	if rerr := body.readErr(); rerr != nil {
		return nil, l.Name, l.Version, rerr
	}
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	rows, err := validate(l, req.Inputs)
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	if err := checkRequested(l, req.Outputs); err != nil {
		return nil, l.Name, l.Version, err
	}
	outputs, err := s.predict(r.Context(), l, req.Inputs, rows, req.Outputs)
	if err != nil {
		return nil, l.Name, l.Version, err
	}
	req.Inputs = nil // no longer needed while the outputs are encoded
	var n int64
	for _, o := range outputs {
		n += o.Elements()
	}
	// The longest number strconv writes is 24 bytes.
	if err := res.take(n * 25); err != nil {
		return nil, l.Name, l.Version, err
	}
	resp := &tensor.JSONResponse{
		ModelName:    l.Name,
		ModelVersion: l.Version,
		ID:           req.ID,
		Parameters:   map[string]any{ServerParameter: s.cfg.Name},
		Outputs:      make([]tensor.JSONOutput, len(outputs)),
	}
	for i, o := range outputs {
		if resp.Outputs[i], err = tensor.EncodeJSON(o); err != nil {
			return nil, l.Name, l.Version, status.Errorf(codes.Internal, "model %q v%s: %v", l.Name, l.Version, err)
		}
	}
	return resp, l.Name, l.Version, nil
}

// writeInferResponse writes resp with each output's data copied straight
// from its encoded form: json.Encoder would validate and copy every
// RawMessage into one buffer holding the whole response again.
func writeInferResponse(w http.ResponseWriter, resp *tensor.JSONResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	head := *resp
	head.Outputs = nil
	b, _ := json.Marshal(head) // strings and a map of strings cannot fail
	b = b[:len(b)-len(`null}`)]
	b = append(b, '[')
	for i, o := range resp.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		data := o.Data
		o.Data = nil
		meta, _ := json.Marshal(o)
		b = append(b, meta[:len(meta)-len(`null}`)]...)
		if _, err := w.Write(b); err != nil {
			return
		}
		if _, err := w.Write(data); err != nil {
			return
		}
		b = append(b[:0], '}')
	}
	b = append(b, "]}\n"...)
	_, _ = w.Write(b)
}

func (s *Server) httpIndex(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ready bool `json:"ready"`
	}
	if r.ContentLength != 0 {
		body := s.newBodyReader(w, r)
		s.readers.add(body)
		err := json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(&req)
		s.readers.remove(body)
		if rerr := body.readErr(); rerr != nil {
			writeError(w, rerr)
			return
		}
		if err != nil && !errors.Is(err, io.EOF) {
			writeError(w, invalidf("repository index request: %v", err))
			return
		}
	}
	type entry struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
		State   string `json:"state"`
		Reason  string `json:"reason,omitempty"`
	}
	idx := s.repo.Index(req.Ready)
	out := make([]entry, len(idx))
	for i, e := range idx {
		out[i] = entry{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) httpLoad(w http.ResponseWriter, r *http.Request, admin bool) {
	if err := s.controlAllowed(admin); err != nil {
		writeError(w, err)
		return
	}
	if err := s.repo.Load(r.Context(), r.PathValue("model")); err != nil {
		writeError(w, fmt.Errorf("load: %w", err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) httpUnload(w http.ResponseWriter, r *http.Request, admin bool) {
	if err := s.controlAllowed(admin); err != nil {
		writeError(w, err)
		return
	}
	if err := s.repo.Unload(r.Context(), r.PathValue("model")); err != nil {
		writeError(w, fmt.Errorf("unload: %w", err))
		return
	}
	w.WriteHeader(http.StatusOK)
}
