package server

import (
	"context"
	"fmt"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// unmatchedPrefix keys, in the snapshot cache, a node no group matches.
// No snapshot is ever set under such a key, so the node's watches stay
// open and are answered as soon as a later set puts it in a group (its
// next request is re-resolved).
const unmatchedPrefix = "unmatched/"

// NodeInfo extracts what grouping needs from an xDS node: its ID and the
// role and service the bootstrap wrote into its metadata.
func NodeInfo(n *corev3.Node) model.NodeInfo {
	info := model.NodeInfo{ID: n.GetId()}
	fields := n.GetMetadata().GetFields()
	if v, ok := fields[model.MetadataRole]; ok {
		info.Role = model.Role(v.GetStringValue())
	}
	if v, ok := fields[model.MetadataService]; ok {
		info.Service = v.GetStringValue()
	}
	return info
}

// nodeHash keys the snapshot cache by node group.
type nodeHash struct{ s *Server }

// ID returns the node's group, or an unmatched key unique to the node.
func (h nodeHash) ID(n *corev3.Node) string {
	info := NodeInfo(n)
	if g, ok := h.s.groupOf(info); ok {
		return g
	}
	return unmatchedPrefix + info.ID
}

// cacheLogger adapts slog to go-control-plane's logger. The cache logs
// every watch at debug and info level, which at a thousand nodes drowns
// everything else, so both go to debug.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Warnf(format string, args ...any)  { c.logf(slog.LevelWarn, format, args) }
func (c cacheLogger) Errorf(format string, args ...any) { c.logf(slog.LevelError, format, args) }

// logf formats only when the level is enabled: the cache logs every watch,
// and formatting a thousand discarded lines per push costs real CPU.
func (c cacheLogger) logf(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !c.l.Enabled(ctx, level) {
		return
	}
	c.l.Log(ctx, level, fmt.Sprintf(format, args...))
}
