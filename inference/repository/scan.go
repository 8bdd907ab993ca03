package repository

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// scanDir reads the model directories under dir. A model whose config or
// layout is broken is still listed, with the reason, so that it reports why
// it cannot serve while the others do.
func (r *Repository) scanDir() (map[string]*model, error) {
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("read model repository: %w", err)
	}
	models := make(map[string]*model, len(entries))
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || !looksLikeModel(filepath.Join(r.opts.Dir, e.Name())) {
			continue
		}
		models[e.Name()] = r.scanModel(e.Name())
	}
	return models, nil
}

// looksLikeModel tells a model directory (a config.yaml or a version
// directory) from other directories kept beside the models, such as
// fixtures, which are skipped rather than reported as broken models.
func looksLikeModel(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true // let scanModel report why
	}
	for _, e := range entries {
		if n, err := strconv.ParseInt(e.Name(), 10, 64); e.IsDir() && err == nil && n > 0 {
			return true
		}
	}
	return false
}

// scanModel reads DIR/name: its config.yaml and its version directories.
func (r *Repository) scanModel(name string) *model {
	m := &model{name: name, dir: filepath.Join(r.opts.Dir, name)}
	if r.root != "" {
		// Absolute, so that rel cuts the root from every message.
		m.dir = filepath.Join(r.root, name)
	}
	file := filepath.Join(m.dir, ConfigFile)
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			m.configErr = fmt.Errorf("model %q: %s is missing", name, file)
		} else {
			m.configErr = fmt.Errorf("model %q: %w", name, err)
		}
		return m
	}
	cfg, err := ParseConfig(file, name, data)
	if err != nil {
		m.configErr = fmt.Errorf("model %q: %w", name, err)
		return m
	}
	if _, ok := r.opts.Registry[cfg.Runtime]; !ok {
		v := validator{file: file}
		if err := yamlRoot(data, &v); err == nil {
			v.fail([]any{"runtime"}, "unknown runtime %q (known: %s)", cfg.Runtime, strings.Join(r.runtimes(), ", "))
			m.configErr = fmt.Errorf("model %q: %w", name, v.errs[0])
			return m
		}
	}
	m.config = cfg
	m.sig = cfg.Signature()
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		m.configErr = fmt.Errorf("model %q: %w", name, err)
		return m
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		// Triton ignores directories that are not version numbers; so do we.
		n, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || n <= 0 || strconv.FormatInt(n, 10) != e.Name() {
			continue
		}
		m.versions = append(m.versions, &version{m: m, num: n, str: e.Name()})
	}
	if len(m.versions) == 0 {
		m.configErr = fmt.Errorf("model %q: no version directories (positive integers) in %s", name, m.dir)
		return m
	}
	sort.Slice(m.versions, func(i, j int) bool { return m.versions[i].num < m.versions[j].num })
	return m
}

func (r *Repository) runtimes() []string {
	names := make([]string, 0, len(r.opts.Registry))
	for n := range r.opts.Registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
