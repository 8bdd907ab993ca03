package localca

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperDirEnv makes the test binary a CA-opening child process (see
// TestMain) instead of running tests.
const helperDirEnv = "MAESTRO_LOCALCA_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperDirEnv); dir != "" {
		os.Exit(helperOpen(dir))
	}
	os.Exit(m.Run())
}

// helperOpen waits for the parent's go (a line on stdin), so that every
// child opens the directory at the same moment, then prints the root's
// fingerprint.
func helperOpen(dir string) int {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "wait for start:", err)
		return 2
	}
	ca, err := Open(Config{Dir: dir, TrustDomain: td, Intermediate: os.Getenv(helperDirEnv+"_INTER") != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(fingerprint(ca))
	return 0
}

func fingerprint(ca *CA) string {
	sum := sha256.Sum256(ca.Root().Raw)
	return hex.EncodeToString(sum[:])
}

// TestReliabilityCAInitAcrossProcesses starts three processes on one fresh
// state directory at the same moment, 20 times: every one must open it
// (none fails on a file another is writing) and all must hold the same
// root, the one on disk.
func TestReliabilityCAInitAcrossProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const rounds, procs = 20, 3
	start := time.Now()
	for round := range rounds {
		inter := round%2 == 1 // half the rounds with an intermediate, which is written too
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var (
			cmds   []*exec.Cmd
			stdins []io.WriteCloser
			outs   []*strings.Builder
			errbs  []*strings.Builder
		)
		for range procs {
			cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
			if inter {
				cmd.Env = append(cmd.Env, helperDirEnv+"_INTER=1")
			}
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, stdins = append(cmds, cmd), append(stdins, in)
			outs, errbs = append(outs, &out), append(errbs, &errb)
			t.Cleanup(func() { _ = cmd.Process.Kill() })
		}
		for _, in := range stdins {
			_, _ = io.WriteString(in, "go\n")
			_ = in.Close()
		}
		var roots []string
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				cancel()
				t.Fatalf("round %d: process %d: %v: %s", round, i, err, errbs[i])
			}
			roots = append(roots, strings.TrimSpace(outs[i].String()))
		}
		cancel()
		onDisk := fingerprint(open(t, Config{Dir: dir, Intermediate: inter}))
		for i, r := range roots {
			if r != onDisk {
				t.Fatalf("round %d: process %d serves root %.12s, the directory holds %.12s (all: %v)", round, i, r, onDisk, roots)
			}
		}
	}
	t.Logf("%d rounds of %d processes on a fresh directory: one root each round (%s)", rounds, procs, time.Since(start).Round(time.Millisecond))
}

// TestReliabilityCAInitConcurrentOpens is the same race inside one process:
// separate CA values share nothing but the directory.
func TestReliabilityCAInitConcurrentOpens(t *testing.T) {
	const rounds, opens = 20, 4
	for round := range rounds {
		dir := t.TempDir()
		gate := make(chan struct{})
		roots := make([]string, opens)
		errs := make([]error, opens)
		var wg sync.WaitGroup
		for i := range opens {
			wg.Go(func() {
				<-gate
				ca, err := Open(Config{Dir: dir, TrustDomain: td, Intermediate: true})
				if err != nil {
					errs[i] = err
					return
				}
				roots[i] = fingerprint(ca)
			})
		}
		close(gate)
		wg.Wait()
		for i := range opens {
			if errs[i] != nil {
				t.Fatalf("round %d: open %d: %v", round, i, errs[i])
			}
			if roots[i] != roots[0] {
				t.Fatalf("round %d: opens ended with different roots: %v", round, roots)
			}
		}
	}
}
