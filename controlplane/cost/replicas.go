package cost

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// pool is the replicas of one service version (or, for rows that name no
// service, every such replica).
type pool struct {
	svc, sv   string
	instances map[string]float64 // replica -> cores
	cores     float64            // core-seconds over the window
	gbSeconds float64
}

// replicas compares each pool's replica count with what its measured CPU
// load needs at the target utilization. The load is each replica's whole
// process CPU when opts.Servers has it (protocol work needs cores too),
// else its models' CPU. A pool that a route with an SLO reaches keeps at
// least two replicas, so one failure or roll-out does not take the route
// down.
func replicas(rows []Row, window time.Duration, opts Options) []Recommendation {
	process := map[string]float64{}
	for _, s := range opts.Servers {
		if s.ProcessCoreSeconds > 0 {
			process[s.Instance] = s.ProcessCoreSeconds
		}
	}
	pools := map[[2]string]*pool{}
	counted := map[string]bool{} // instances whose process CPU is in a pool
	for _, r := range rows {
		k := [2]string{r.Service, r.ServiceVersion}
		p := pools[k]
		if p == nil {
			p = &pool{svc: r.Service, sv: r.ServiceVersion, instances: map[string]float64{}}
			pools[k] = p
		}
		p.instances[r.Instance] = max(p.instances[r.Instance], r.Cores)
		p.gbSeconds += r.GBSeconds
		if cpu, ok := process[r.Instance]; ok {
			if !counted[r.Instance] {
				p.cores += cpu
				counted[r.Instance] = true
			}
			continue
		}
		p.cores += r.CoreSeconds
	}
	keys := make([][2]string, 0, len(pools))
	for k := range pools {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	var out []Recommendation
	for _, k := range keys {
		p := pools[k]
		n := len(p.instances)
		perReplica := opts.ReplicaCores
		if perReplica <= 0 {
			var sum float64
			for _, c := range p.instances {
				sum += c
			}
			perReplica = sum / float64(n)
		}
		if perReplica <= 0 {
			perReplica = 1
		}
		load := p.cores / window.Seconds()
		floor, why := 1, ""
		if route := sloRoute(p, opts); route != "" {
			floor, why = 2, fmt.Sprintf("; route %s has an SLO, so at least 2 stay", route)
		}
		need := max(floor, int(math.Ceil(load/(perReplica*opts.TargetUtilization))))
		if n <= need {
			continue
		}
		subject := "servers without a service label"
		if p.svc != "" {
			subject = p.svc + "/" + p.sv
		}
		memPerReplica := p.gbSeconds / window.Seconds() / float64(n)
		spare := float64(n - need)
		monthly := spare * (perReplica*opts.Prices.CPUCoreHour + memPerReplica*opts.Prices.MemoryGBHour) * hoursPerMonth
		out = append(out, Recommendation{
			Kind:    "replicas",
			Subject: subject,
			Message: fmt.Sprintf("%d replicas of %.3g cores carry %.3f cores of load (%.1f%% of their cores); %d keep utilization under %.0f%%%s",
				n, perReplica, load, 100*load/(perReplica*float64(n)), need, 100*opts.TargetUtilization, why),
			MonthlyDollars: monthly,
		})
	}
	return out
}

// sloRoute names a route with an SLO whose components reach pool p, or "".
func sloRoute(p *pool, opts Options) string {
	if opts.Mesh == nil {
		return ""
	}
	for _, rt := range opts.Mesh.Routes {
		if rt.Spec.SLO == nil {
			continue
		}
		for _, c := range Components(rt) {
			if p.svc == "" || (c.Service == p.svc && (c.ServiceVersion == "" || c.ServiceVersion == p.sv)) {
				return rt.Metadata.Name
			}
		}
	}
	return ""
}
