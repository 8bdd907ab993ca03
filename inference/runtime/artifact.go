package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ReadArtifact reads the model file of spec: defaultFile, or the file the
// "model_file" parameter names, in the version directory. what names the
// artifact in errors ("xgboost model"). The file name must not leave the
// version directory.
func ReadArtifact(ctx context.Context, spec Spec, defaultFile, what string) (path string, data []byte, err error) {
	file := defaultFile
	if f := spec.Params["model_file"]; f != "" {
		file = f
	}
	if filepath.Base(file) != file {
		return "", nil, fmt.Errorf("parameter model_file %q: want a file name in the version directory", file)
	}
	path = filepath.Join(spec.Dir, file)
	if data, err = os.ReadFile(path); err != nil {
		return "", nil, fmt.Errorf("read %s: %w", what, err)
	}
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	return path, data, nil
}
