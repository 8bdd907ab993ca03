package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/maestro-ml/maestro/cmd/maestro/internal/adminstatus"
	"github.com/maestro-ml/maestro/controlplane"
)

// statusTimeout bounds the request to the admin port.
const statusTimeout = 10 * time.Second

// runStatus prints a running control plane's routes, weights, rollouts
// and ensemble member weights, read from its admin port.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr, `Prints a running control plane's routes with the weights the policy writes and those served
(rollout and adaptive overlays), its rollouts, and its ensembles' member weights, from
http://ADMIN/debug/status.`, "[--admin ADDR] [--json]")
	admin := fs.String("admin", controlplane.DefaultAdminAddr, "the control plane's admin `address` (host:port or URL)")
	asJSON := fs.Bool("json", false, "print the status document as JSON instead of tables")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maestro status: unexpected arguments:", strings.Join(fs.Args(), " "))
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := adminstatus.Fetch(ctx, http.DefaultClient, *admin)
	if err != nil {
		return err
	}
	if *asJSON {
		out, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	return printStatus(stdout, st)
}

// printStatus writes st as tables: routes, rollouts, members.
func printStatus(w io.Writer, st adminstatus.Document) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "version %s\n", st.Version)
	if st.LastError != "" {
		fmt.Fprintf(tw, "last reload failed: %s\n", st.LastError)
	}
	for _, n := range st.Notes {
		fmt.Fprintf(tw, "note: %s\n", n)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ROUTE\tSERVICE\tVERSION\tPOLICY\tSERVED\tROLLOUT")
	for _, r := range st.Routes {
		name, rollout := r.Name, r.Rollout
		if len(r.Split) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t%s\n", name, dash(rollout))
		}
		for _, s := range r.Split {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", name, s.Service, s.Version, s.Policy, s.Effective, dash(rollout))
			name, rollout = "", ""
		}
	}
	if len(st.Rollouts) > 0 {
		lead := "followed"
		if st.Leader {
			lead = "driven by this replica"
		}
		fmt.Fprintf(tw, "\nROLLOUTS (%s; lease holder %s)\n", lead, dash(st.Holder))
		fmt.Fprintln(tw, "ROUTE\tVERSION\tPHASE\tSTEP\tWEIGHT\tNEXT JUDGEMENT\tLAST DECISION")
		for _, r := range st.Rollouts {
			next := "-"
			if !r.NextJudgement.IsZero() {
				next = r.NextJudgement.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s: %s\n", r.Route, r.Version, r.Phase, r.Step+1, len(r.Steps), r.Weight,
				next, r.LastDecision, r.LastReason)
		}
	}
	header := false
	for _, r := range st.Routes {
		for _, m := range r.Members {
			if !header {
				fmt.Fprintln(tw, "\nENSEMBLE\tMEMBER\tPOLICY\tSERVED\tQUALITY")
				header = true
			}
			q := "-"
			if m.Quality != nil {
				q = strconv.FormatFloat(*m.Quality, 'f', 3, 64)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, m.Member, weight(m.Policy), weight(m.Effective), q)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func weight(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
