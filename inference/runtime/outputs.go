package runtime

import "fmt"

// ScoreOutput is one declared output of a model that scores rows: a float
// output gets the scores, an integer output the class label of each row.
type ScoreOutput struct {
	Spec   TensorSpec
	Labels bool
}

// BindScoreOutputs checks the declared outputs of a model that gives width
// scores per row and says what each is filled with. widthNote explains
// width in errors ("the model has 2 outputs"); noLabels, when not empty,
// is why the model cannot give class labels, and makes integer outputs an
// error.
func BindScoreOutputs(outputs []TensorSpec, width int, widthNote, noLabels string) ([]ScoreOutput, error) {
	if len(outputs) == 0 {
		return nil, fmt.Errorf("config outputs: none declared")
	}
	out := make([]ScoreOutput, 0, len(outputs))
	for _, o := range outputs {
		ow, err := o.RowWidth()
		if err != nil {
			return nil, fmt.Errorf("config output %q: %w", o.Name, err)
		}
		switch o.Datatype {
		case FP32, FP64:
			if ow != width {
				return nil, fmt.Errorf("config output %q: %d values per row, %s", o.Name, ow, widthNote)
			}
			out = append(out, ScoreOutput{Spec: o})
		case Int32, Int64:
			if noLabels != "" {
				return nil, fmt.Errorf("config output %q: %s", o.Name, noLabels)
			}
			if ow != 1 {
				return nil, fmt.Errorf("config output %q: %d values per row, a class label is 1", o.Name, ow)
			}
			out = append(out, ScoreOutput{Spec: o, Labels: true})
		default:
			return nil, fmt.Errorf("config output %q: datatype %s, want FP32, FP64, INT32 or INT64", o.Name, o.Datatype)
		}
	}
	return out, nil
}
