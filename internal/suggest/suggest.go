// Package suggest finds the name an operator probably meant when a flag,
// an environment variable or a YAML key is misspelt, so the error or the
// warning can say "did you mean ...". It is not a spelling corrector for
// anything else: candidates are short identifiers.
package suggest

import "strings"

// Closest returns the candidate nearest to word by edit distance, compared
// case-insensitively, or "" when none is near enough to be a likely typo: at
// most one edit for words up to 4 letters, then one more per 4 letters.
// Ties go to the earlier candidate.
func Closest(word string, candidates []string) string {
	w := strings.ToLower(word)
	limit := 1 + max(len(w)-1, 0)/4
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := distance(w, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b (bytes; the names compared
// are ASCII), counting a swap of two neighbours as one edit.
func distance(a, b string) int {
	// Three rows of the dynamic programme: two back for transpositions.
	prev2 := make([]int, len(b)+1)
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
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
