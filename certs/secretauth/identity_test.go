package secretauth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/certs/spiffe"
)

// fakeReviewer stands for the API server's TokenReview.
type fakeReviewer map[string][2]string

func (f fakeReviewer) Review(_ context.Context, tok string) (string, string, error) {
	if a, ok := f[tok]; ok {
		return a[0], a[1], nil
	}
	return "", "", errors.New("token rejected by TokenReview")
}

// TestStreamsWithoutCertificates: over plaintext a stream with no
// credential is admitted anonymously and gets only shared secrets; a
// presented token must be good (never downgraded to anonymous); a
// Kubernetes service-account token stands for its account's identity.
func TestStreamsWithoutCertificates(t *testing.T) {
	g, err := New(Config{TrustDomain: td, Shared: []string{bundle}, Anonymous: true,
		Tokens:   map[string][]spiffe.ID{token: {web}},
		Reviewer: fakeReviewer{"k8s-db-token": {"default", "db"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		ctx      context.Context
		openErr  bool
		allowed  []string
		refused  []string
		wantPeer string
	}{
		{name: "anonymous", ctx: context.Background(), allowed: []string{bundle}, refused: []string{web.String()}, wantPeer: "unauthenticated"},
		{name: "bootstrap token", ctx: tokenCtx(token), allowed: []string{web.String(), bundle}, refused: []string{db.String()}, wantPeer: "token(" + web.String() + ")"},
		{name: "service-account token", ctx: tokenCtx("k8s-db-token"), allowed: []string{db.String()}, refused: []string{web.String()}, wantPeer: "k8s(" + db.String() + ")"},
		{name: "bad token", ctx: tokenCtx("forged-token-forged-token"), openErr: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := int64(i + 1)
			err := g.Open(tc.ctx, id)
			if tc.openErr {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("open: err = %v, want ErrUnauthenticated", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close(id)
			if err := g.Check(context.Background(), id, "n", tc.allowed); err != nil {
				t.Fatalf("allowed %v: %v", tc.allowed, err)
			}
			for _, r := range tc.refused {
				err := g.Check(context.Background(), id, "n", []string{r})
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.wantPeer) {
					t.Fatalf("%s: err = %v, want a refusal naming %s", r, err, tc.wantPeer)
				}
			}
		})
	}
}

// TestAvailableChecksNewSubscriptionsOnly: a secret Available refuses is
// refused to a stream asking for it anew, but a stream that was already
// granted it (its ACKs name it again) keeps going.
func TestAvailableChecksNewSubscriptionsOnly(t *testing.T) {
	expired := false
	g, err := New(Config{TrustDomain: td, Tokens: map[string][]spiffe.ID{token: {web}},
		Available: func(name string) error {
			if expired && name == web.String() {
				return errors.New("expired")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []int64{1, 2} {
		if err := g.Open(tokenCtx(token), id); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Check(ctx, 1, "n", []string{web.String()}); err != nil {
		t.Fatal(err)
	}
	expired = true
	if err := g.Check(ctx, 1, "n", []string{web.String()}); err != nil {
		t.Fatalf("ACK on a granted stream refused: %v", err)
	}
	if err := g.Check(ctx, 2, "n", []string{web.String()}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("new subscription: err = %v, want refused as expired", err)
	}
}

func TestParseTokens(t *testing.T) {
	good := "# comment\n\n" + token + " " + web.String() + " " + db.String() + "\n"
	got, err := ParseTokens("tokens", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if ids := got[token]; len(ids) != 2 || ids[0] != web || ids[1] != db {
		t.Fatalf("got %v", got)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"short":     {"abc " + web.String(), "tokens:1: token shorter than 16 characters"},
		"no id":     {"\n" + token, "tokens:2: token without a SPIFFE ID"},
		"bad id":    {token + " spiffe://", "tokens:1: "},
		"duplicate": {token + " " + web.String() + "\n" + token + " " + db.String(), "tokens:2: token given twice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseTokens("tokens", []byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
}
