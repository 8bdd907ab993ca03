package closedloop

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/maestro-ml/maestro/controlplane/adaptive"
)

// maxFeedbackBody bounds one feedback or observation request: a label is a
// few dozen bytes, an observation a few hundred per member.
const maxFeedbackBody = 64 << 10

// Feedback is the body of POST /v1/feedback: the true value of a request
// an adaptive ensemble answered.
type Feedback struct {
	RequestID string   `json:"requestId"`
	Value     *float64 `json:"value"`
}

// Observation is the body of POST /v1/observations: the members' answers
// to one request of an adaptive route, as the data plane saw them.
type Observation struct {
	Route     string `json:"route"`
	RequestID string `json:"requestId"`
	// Ensemble is the combined answer; null or absent when the ensemble
	// gave none (no quorum).
	Ensemble *float64       `json:"ensemble"`
	Answers  []MemberAnswer `json:"answers"`
}

// MemberAnswer is one member's part: Outcome is "answered" (Value then
// required), "timeout" or "failed".
type MemberAnswer struct {
	Member  string   `json:"member"`
	Outcome string   `json:"outcome"`
	Value   *float64 `json:"value"`
}

// FeedbackHandler serves POST /v1/feedback: 204 when the label counted,
// 404 when the request is not held (never observed, labelled already, or
// expired: see adaptive.StoreConfig), 400 for a body that is not a label.
func (l *Loop) FeedbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var fb Feedback
		if err := decode(w, r, &fb); err != nil {
			http.Error(w, "feedback: "+err.Error(), http.StatusBadRequest)
			return
		}
		if fb.RequestID == "" || fb.Value == nil {
			http.Error(w, `feedback: "requestId" and "value" are required`, http.StatusBadRequest)
			return
		}
		err := l.tuner.Label(fb.RequestID, *fb.Value)
		switch {
		case errors.Is(err, adaptive.ErrUnknownRequest):
			http.Error(w, "feedback: "+err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, "feedback: "+err.Error(), http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// ObservationHandler serves POST /v1/observations: 204 when recorded, 400
// for a malformed observation (naming the field).
func (l *Loop) ObservationHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ob Observation
		if err := decode(w, r, &ob); err != nil {
			http.Error(w, "observation: "+err.Error(), http.StatusBadRequest)
			return
		}
		answers, ensemble, err := ob.answers()
		if err != nil {
			http.Error(w, "observation: "+err.Error(), http.StatusBadRequest)
			return
		}
		l.tuner.Observe(ob.Route, ob.RequestID, answers, ensemble)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (ob *Observation) answers() ([]adaptive.Answer, float64, error) {
	if ob.Route == "" {
		return nil, 0, errors.New(`"route" is required`)
	}
	if len(ob.Answers) == 0 {
		return nil, 0, errors.New(`"answers" is empty`)
	}
	ensemble := math.NaN()
	if ob.Ensemble != nil {
		ensemble = *ob.Ensemble
	}
	out := make([]adaptive.Answer, len(ob.Answers))
	for i, a := range ob.Answers {
		if a.Member == "" {
			return nil, 0, fmt.Errorf("answers[%d].member is required", i)
		}
		out[i].Member = a.Member
		switch a.Outcome {
		case "answered":
			if a.Value == nil {
				return nil, 0, fmt.Errorf("answers[%d].value is required when the outcome is answered", i)
			}
			out[i].Outcome, out[i].Value = adaptive.Answered, *a.Value
		case "timeout":
			out[i].Outcome = adaptive.TimedOut
		case "failed":
			out[i].Outcome = adaptive.Failed
		default:
			return nil, 0, fmt.Errorf("answers[%d].outcome %q: want answered, timeout or failed", i, a.Outcome)
		}
	}
	return out, ensemble, nil
}

// decode reads one JSON document, refusing unknown fields and bodies over
// maxFeedbackBody.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFeedbackBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	if dec.More() {
		return errors.New("decode body: more than one JSON document")
	}
	return nil
}
