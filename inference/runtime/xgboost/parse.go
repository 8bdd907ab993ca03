package xgboost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The JSON document Booster.save_model("m.json") writes. Only the fields
// prediction needs are declared; the rest (loss_changes, sum_hessian,
// base_weights, parents, attributes) are skipped by the decoder.
type document struct {
	Version []int    `json:"version"`
	Learner *learner `json:"learner"`
}

type learner struct {
	FeatureNames     []string          `json:"feature_names"`
	GradientBooster  gbtree            `json:"gradient_booster"`
	LearnerModel     learnerModelParam `json:"learner_model_param"`
	Objective        objectiveJSON     `json:"objective"`
	FeatureTypesJSON []string          `json:"feature_types"`
}

type learnerModelParam struct {
	BaseScore  string `json:"base_score"`
	NumClass   string `json:"num_class"`
	NumFeature string `json:"num_feature"`
	NumTarget  string `json:"num_target"`
}

type objectiveJSON struct {
	Name string `json:"name"`
}

type gbtree struct {
	Name  string      `json:"name"`
	Model gbtreeModel `json:"model"`
}

type gbtreeModel struct {
	Param    gbtreeParam `json:"gbtree_model_param"`
	Trees    []treeJSON  `json:"trees"`
	TreeInfo []int       `json:"tree_info"`
}

type gbtreeParam struct {
	NumTrees        string `json:"num_trees"`
	NumParallelTree string `json:"num_parallel_tree"`
}

type treeJSON struct {
	Param            treeParam `json:"tree_param"`
	LeftChildren     []int32   `json:"left_children"`
	RightChildren    []int32   `json:"right_children"`
	SplitIndices     []int64   `json:"split_indices"`
	SplitConditions  []float32 `json:"split_conditions"`
	DefaultLeft      flags     `json:"default_left"`
	SplitType        []int     `json:"split_type"`
	CategoriesNodes  []int     `json:"categories_nodes"`
	CategoriesSizes  []int     `json:"categories_sizes"`
	CategoriesValues []int     `json:"categories"`
}

type treeParam struct {
	NumNodes       string `json:"num_nodes"`
	NumFeature     string `json:"num_feature"`
	SizeLeafVector string `json:"size_leaf_vector"`
}

// flags decodes default_left, which XGBoost writes as 0/1 integers but
// early 1.x releases wrote as booleans.
type flags []bool

func (f *flags) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make([]bool, len(raw))
	for i, r := range raw {
		switch s := string(bytes.TrimSpace(r)); s {
		case "0", "false":
		case "1", "true":
			out[i] = true
		default:
			return fmt.Errorf("element %d is %s, want 0, 1, true or false", i, s)
		}
	}
	*f = out
	return nil
}

// objectiveTransform is the output transform of each objective this
// runtime evaluates.
func objectiveTransform(name string) (transform, bool) {
	switch name {
	case "binary:logistic", "reg:logistic":
		return sigmoid, true
	case "binary:logitraw", "reg:squarederror", "reg:linear":
		return identity, true
	case "multi:softprob":
		return softprob, true
	case "multi:softmax":
		return softmax, true
	}
	return 0, false
}

// limits keep a hostile or corrupt file from asking for absurd allocations.
const (
	maxFeatures = 1 << 20
	maxClasses  = 1 << 12
	maxNodes    = 1 << 26
)

// parse decodes and validates an XGBoost JSON model into an ensemble.
func parse(data []byte) (*ensemble, error) {
	if len(data) > 1 && data[0] == '{' && bytes.IndexByte([]byte("iUILl$#"), data[1]) >= 0 {
		// UBJSON (what save_model writes for a .ubj file name) opens with
		// '{' then a type or count marker, never whitespace or a quote.
		return nil, errors.New("this looks like UBJSON, not JSON: save the model with a .json file name")
	}
	data, nonFinite := replaceNonFinite(data)
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, jsonError(data, err)
	}
	if doc.Learner == nil {
		return nil, errors.New(`missing "learner": not an XGBoost JSON model`)
	}
	if len(doc.Version) != 3 || doc.Version[0] < 1 || doc.Version[0] > 2 {
		return nil, fmt.Errorf("version %v: want an XGBoost 1.x or 2.x model", doc.Version)
	}
	l := doc.Learner

	gb := l.GradientBooster
	switch gb.Name {
	case "gbtree":
	case "dart", "gblinear":
		return nil, fmt.Errorf("learner.gradient_booster.name: booster %q is not supported, only gbtree", gb.Name)
	default:
		return nil, fmt.Errorf("learner.gradient_booster.name: unknown booster %q, want gbtree", gb.Name)
	}

	tr, ok := objectiveTransform(l.Objective.Name)
	if !ok {
		return nil, fmt.Errorf("learner.objective.name: objective %q is not supported (supported: binary:logistic, binary:logitraw, reg:logistic, reg:squarederror, multi:softprob, multi:softmax)", l.Objective.Name)
	}
	numFeature, err := intParam("learner.learner_model_param.num_feature", l.LearnerModel.NumFeature, 1, maxFeatures)
	if err != nil {
		return nil, err
	}
	numClass, err := intParam("learner.learner_model_param.num_class", orDefault(l.LearnerModel.NumClass, "0"), 0, maxClasses)
	if err != nil {
		return nil, err
	}
	numTarget, err := intParam("learner.learner_model_param.num_target", orDefault(l.LearnerModel.NumTarget, "1"), 1, maxClasses)
	if err != nil {
		return nil, err
	}
	if numTarget != 1 {
		return nil, fmt.Errorf("learner.learner_model_param.num_target: %d targets: multi-target models are not supported", numTarget)
	}
	groups := 1
	if tr == softprob || tr == softmax {
		if numClass < 2 {
			return nil, fmt.Errorf("learner.learner_model_param.num_class: %d classes for %s, want at least 2", numClass, l.Objective.Name)
		}
		groups = numClass
	}
	base, err := baseScore(l.LearnerModel.BaseScore, groups)
	if err != nil {
		return nil, err
	}
	for _, ft := range l.FeatureTypesJSON {
		if ft == "c" {
			return nil, errors.New("learner.feature_types: categorical features are not supported")
		}
	}

	m := gb.Model
	if len(m.TreeInfo) != len(m.Trees) {
		return nil, fmt.Errorf("learner.gradient_booster.model.tree_info: %d entries for %d trees", len(m.TreeInfo), len(m.Trees))
	}
	if m.Param.NumTrees != "" {
		if n, err := strconv.Atoi(m.Param.NumTrees); err != nil || n != len(m.Trees) {
			return nil, fmt.Errorf("learner.gradient_booster.model.gbtree_model_param.num_trees: %q, but %d trees follow", m.Param.NumTrees, len(m.Trees))
		}
	}
	b := newBuilder(numFeature, groups)
	for i := range m.Trees {
		path := fmt.Sprintf("learner.gradient_booster.model.trees[%d]", i)
		g := m.TreeInfo[i]
		if g < 0 || g >= groups {
			return nil, fmt.Errorf("learner.gradient_booster.model.tree_info[%d]: group %d out of range [0, %d)", i, g, groups)
		}
		if err := b.add(path, &m.Trees[i], g); err != nil {
			return nil, err
		}
	}
	if nonFinite {
		// Only categorical splits write NaN thresholds, and those were refused
		// above; anything else non-finite is a corrupt model.
		return nil, errors.New("model contains NaN or Infinity literals")
	}
	e := b.build()
	e.transform = tr
	e.objective = l.Objective.Name
	e.version = doc.Version
	for g := range base {
		e.baseMargin[g] = probToMargin(tr, base[g])
	}
	return e, nil
}

// baseScore reads learner_model_param.base_score: "5E-1" in 1.x and early
// 2.x, "[5E-1]" (a vector, one value per output group) in later releases.
func baseScore(s string, groups int) ([]float64, error) {
	const field = "learner.learner_model_param.base_score"
	if s == "" {
		s = "0.5" // XGBoost's default before base_score was serialised
	}
	s = strings.TrimSpace(s)
	vector := strings.HasPrefix(s, "[")
	if vector {
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("%s: %q: unterminated vector", field, s)
		}
		s = s[1 : len(s)-1]
	}
	parts := strings.Split(s, ",")
	vals := make([]float64, 0, len(parts))
	for _, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: %q is not a finite number", field, p)
		}
		vals = append(vals, v)
	}
	switch len(vals) {
	case groups:
		return vals, nil
	case 1:
		out := make([]float64, groups)
		for i := range out {
			out[i] = vals[0]
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s: %d values for %d output groups", field, len(vals), groups)
	}
}

// probToMargin maps base_score, which XGBoost keeps in the objective's
// output space, to the margin the trees' sums start from.
func probToMargin(tr transform, p float64) float32 {
	if tr == sigmoid {
		// XGBoost computes -log(1/p - 1) in float32.
		return float32(-math.Log(1/p - 1))
	}
	return float32(p)
}

func intParam(field, s string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", field, s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s: %d out of range [%d, %d]", field, v, lo, hi)
	}
	return v, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// jsonError turns a decoding error into one that names the line and column.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := lineCol(data, syn.Offset)
		return fmt.Errorf("line %d col %d: %w", line, col, err)
	case errors.As(err, &typ):
		line, col := lineCol(data, typ.Offset)
		return fmt.Errorf("line %d col %d: field %s: %w", line, col, typ.Field, err)
	default:
		return err
	}
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// replaceNonFinite rewrites the bare NaN, Infinity and -Infinity literals
// XGBoost writes (for categorical splits) as null, which encoding/json
// accepts, so such a model reaches the check that explains why it is
// refused. It reports whether it replaced any.
func replaceNonFinite(data []byte) ([]byte, bool) {
	if !bytes.Contains(data, []byte("NaN")) && !bytes.Contains(data, []byte("Infinity")) {
		return data, false
	}
	out := make([]byte, 0, len(data))
	inString, escaped, found := false, false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			out = append(out, c)
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		matched := false
		for _, lit := range []string{"NaN", "-Infinity", "Infinity"} {
			if bytes.HasPrefix(data[i:], []byte(lit)) {
				out = append(out, "null"...)
				i += len(lit) - 1
				matched, found = true, true
				break
			}
		}
		if !matched {
			out = append(out, c)
		}
	}
	return out, found
}
