package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
)

// hashLen is the number of hex digits kept from the SHA-256: 128 bits is far
// beyond any chance of two distinct meshes colliding, and keeps versions
// short in logs.
const hashLen = 32

// ContentHash returns a hex digest of v's canonical encoding. It is meant for
// the model's own types: their JSON encoding is canonical because struct
// fields have a fixed order, maps (there are none) would be sorted by key,
// and Normalize sorts every slice. Values that cannot be encoded (which the
// model types never are) hash to the digest of the error text, so distinct
// failures still differ.
func ContentHash(v any) string {
	h := sha256.New()
	writeCanonical(h, v)
	sum := h.Sum(nil)
	return hex.EncodeToString(sum)[:hashLen]
}

func writeCanonical(h hash.Hash, v any) {
	if err := json.NewEncoder(h).Encode(v); err != nil {
		_, _ = h.Write([]byte("error: " + err.Error()))
	}
}

// Hash returns the content hash of the whole mesh; equal meshes have equal
// hashes, so an unchanged mesh can be detected without a deep comparison.
func (m *Mesh) Hash() string { return ContentHash(m) }

// Hash returns the content hash of the group's own definition (not of the
// clusters and secrets it references).
func (g *NodeGroup) Hash() string { return ContentHash(g) }

// Hash returns the content hash of the cluster, endpoints included.
func (c *Cluster) Hash() string { return ContentHash(c) }

// Hash returns the content hash of the secret.
func (s *Secret) Hash() string { return ContentHash(s) }
