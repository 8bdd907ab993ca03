package policy

import "strconv"

// suggest returns ` (did you mean "x"?)` for the option closest to s
// within an edit distance of 2 (a typo), or "".
func suggest(s string, options []string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if d := editDistance(s, o, bestDist); d < bestDist {
			best, bestDist = o, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + strconv.Quote(best) + "?)"
}

// editDistance is the Levenshtein distance of a and b, or limit when it is
// at least limit (names differing in length by that much are skipped).
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

func (v *validator) suggestService(name string) string {
	names := make([]string, len(v.m.Services))
	for i, s := range v.m.Services {
		names[i] = s.Metadata.Name
	}
	return suggest(name, names)
}

func (v *validator) suggestRoute(name string) string {
	names := make([]string, len(v.m.Routes))
	for i, r := range v.m.Routes {
		names[i] = r.Metadata.Name
	}
	return suggest(name, names)
}

func (v *validator) suggestGateway(name string) string {
	names := make([]string, len(v.m.Gateways))
	for i, g := range v.m.Gateways {
		names[i] = g.Metadata.Name
	}
	return suggest(name, names)
}

func versionNames(s *Service) []string {
	names := make([]string, len(s.Spec.Versions))
	for i, v := range s.Spec.Versions {
		names[i] = v.Name
	}
	return names
}
