package cost

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Write prints the report as aligned tables.
func (r *Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "window %v; prices $%g per core-hour, $%g per GB-hour\n\n", r.Window.Round(time.Millisecond), r.Prices.CPUCoreHour, r.Prices.MemoryGBHour)
	fmt.Fprintln(tw, "MODEL\tVERSION\tSERVICE\tREPLICAS\tPREDICTIONS\tCORE-S\tGB-S\tDOLLARS\tCORE-S/1M\t$/1M")
	for _, m := range r.Models {
		svc := "-"
		if m.Service != "" {
			svc = m.Service + "/" + m.ServiceVersion
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.4g\t%.4g\t%.4g\t%s\t%s\n", m.Model, m.Version, svc, m.Replicas,
			m.Predictions, m.CoreSeconds, m.GBSeconds, m.Dollars, num(m.CoreSecondsPerMillion()), money(m.PerMillion()))
	}
	if len(r.Routes) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ROUTE\tPREDICTIONS\tCORE-S\tGB-S\tDOLLARS\tCORE-S/1M\t$/1M\tREACHES")
		for _, rc := range r.Routes {
			parts := make([]string, len(rc.Components))
			for i, c := range rc.Components {
				parts[i] = fmt.Sprintf("%s %s@%s/%s", c.Role, c.Model, c.Service, orAny(c.ServiceVersion))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.4g\t%.4g\t%.4g\t%s\t%s\t%s\n", rc.Route, rc.Predictions, rc.CoreSeconds, rc.GBSeconds,
				rc.Dollars, num(rc.CoreSecondsPerMillion()), money(rc.PerMillion()), strings.Join(parts, ", "))
		}
	}
	if len(r.Servers) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "SERVER\tSERVICE\tPROCESS CORE-S\tMODELS CORE-S\tMODELS' SHARE")
		for _, s := range r.Servers {
			share := "-"
			if s.ProcessCoreSeconds > 0 {
				share = fmt.Sprintf("%.1f%%", 100*s.ModelCoreSeconds/s.ProcessCoreSeconds)
			}
			svc := "-"
			if s.Service != "" {
				svc = s.Service + "/" + s.ServiceVersion
			}
			fmt.Fprintf(tw, "%s\t%s\t%.4g\t%.4g\t%s\n", s.Instance, svc, s.ProcessCoreSeconds, s.ModelCoreSeconds, share)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(r.Recommendations) == 0 {
		_, err := fmt.Fprintln(w, "no recommendations: every loaded model served traffic and no pool has spare replicas")
		return err
	}
	fmt.Fprintln(w, "RECOMMENDATIONS")
	for _, rec := range r.Recommendations {
		if _, err := fmt.Fprintf(w, "- [%s] %s: %s (saves about $%.2f a month)\n", rec.Kind, rec.Subject, rec.Message, rec.MonthlyDollars); err != nil {
			return err
		}
	}
	return nil
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func money(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("$%.4f", v)
}
