/* SPDX-License-Identifier: MIT */
/*
 * Service-time distributions shared by r2p2-synth-server (which spends them) and
 * r2p2-qsim (which simulates them), so both read the same spec and draw the same way:
 *
 *   fixed:US                    every request takes US microseconds (0 allowed)
 *   exp:US                      exponential with mean US (also "exponential:US")
 *   bimodal:SHORT:LONG:P_LONG   SHORT us, or LONG us with probability P_LONG (0..1)
 *
 * Microseconds may have a fraction ("exp:12.5"); at most 10 s. Draws use erand48 on a
 * caller-owned state, so each thread (or simulated stream) keeps its own sequence.
 * Header-only, like stats.h: the tools are single-file programs.
 */
#ifndef R2P2_TOOLS_SVCDIST_H
#define R2P2_TOOLS_SVCDIST_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVCDIST_MAX_US 10000000.0 /* 10 s */

enum svcdist_kind { SVCDIST_FIXED, SVCDIST_EXP, SVCDIST_BIMODAL };

struct svcdist {
	enum svcdist_kind kind;
	double a_us;   /* fixed: the time; exp: the mean; bimodal: the short time */
	double b_us;   /* bimodal: the long time */
	double p_long; /* bimodal: probability of the long time */
};

/* svcdist_num parses a non-negative decimal of microseconds (at most 10 s) into `out`.
 * Returns 0 or -EINVAL. */
static inline int svcdist_num(const char *s, size_t len, double max, double *out)
{
	char buf[32], *end;
	double v;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	/* strtod also takes "inf", "nan", hex and exponents: allow digits and one dot only */
	if (strspn(buf, "0123456789.") != len || strchr(buf, '.') != strrchr(buf, '.'))
		return -EINVAL;
	errno = 0;
	v = strtod(buf, &end);
	if (errno || *end || !(v >= 0) || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * svcdist_parse reads `spec` (see above) into `out`. Returns 0, or -EINVAL with a
 * sentence saying what is wrong in `err` (capacity `err_len`).
 */
static inline int svcdist_parse(const char *spec, struct svcdist *out, char *err, size_t err_len)
{
	const char *colon = strchr(spec, ':'), *tok;
	size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec), nparams = 1, want;
	double v[3] = {0};

	memset(out, 0, sizeof(*out));
	if (kind_len == 5 && !strncmp(spec, "fixed", 5))
		out->kind = SVCDIST_FIXED;
	else if ((kind_len == 3 && !strncmp(spec, "exp", 3)) ||
		 (kind_len == 11 && !strncmp(spec, "exponential", 11)))
		out->kind = SVCDIST_EXP;
	else if (kind_len == 7 && !strncmp(spec, "bimodal", 7))
		out->kind = SVCDIST_BIMODAL;
	else {
		snprintf(err, err_len,
			 "'%s': expected fixed:US, exp:US or bimodal:SHORT_US:LONG_US:P_LONG",
			 spec);
		return -EINVAL;
	}
	want = out->kind == SVCDIST_BIMODAL ? 3 : 1;
	for (tok = colon; tok && *tok; tok++)
		nparams += *tok == ':' && tok != colon;
	if (!colon || nparams != want) {
		snprintf(err, err_len, "'%s': %.*s takes %s", spec, (int)kind_len, spec,
			 want == 3 ? "three values, SHORT_US:LONG_US:P_LONG" : "one value, :US");
		return -EINVAL;
	}
	tok = colon + 1;
	for (size_t i = 0; i < want; i++) {
		const char *end = strchr(tok, ':');
		double max = out->kind == SVCDIST_BIMODAL && i == 2 ? 1.0 : SVCDIST_MAX_US;

		if (!end)
			end = tok + strlen(tok);
		if (svcdist_num(tok, (size_t)(end - tok), max, &v[i])) {
			snprintf(err, err_len, "'%s': value %zu ('%.*s') is not %s", spec, i + 1,
				 (int)(end - tok), tok,
				 max == 1.0 ? "a probability from 0 to 1"
					    : "a number of microseconds from 0 to 10000000");
			return -EINVAL;
		}
		tok = end + 1;
	}
	out->a_us = v[0];
	out->b_us = v[1];
	out->p_long = v[2];
	if (out->kind == SVCDIST_EXP && out->a_us <= 0) {
		snprintf(err, err_len, "'%s': an exponential's mean must be above 0", spec);
		return -EINVAL;
	}
	if (out->kind == SVCDIST_BIMODAL && out->b_us < out->a_us) {
		snprintf(err, err_len, "'%s': the long time must not be shorter than the short one",
			 spec);
		return -EINVAL;
	}
	return 0;
}

/* svcdist_mean_us returns the distribution's mean in microseconds. */
static inline double svcdist_mean_us(const struct svcdist *d)
{
	if (d->kind == SVCDIST_BIMODAL)
		return (1 - d->p_long) * d->a_us + d->p_long * d->b_us;
	return d->a_us;
}

/* svcdist_format writes the canonical spec of `d` into `buf`. */
static inline void svcdist_format(const struct svcdist *d, char *buf, size_t len)
{
	if (d->kind == SVCDIST_FIXED)
		snprintf(buf, len, "fixed:%g", d->a_us);
	else if (d->kind == SVCDIST_EXP)
		snprintf(buf, len, "exp:%g", d->a_us);
	else
		snprintf(buf, len, "bimodal:%g:%g:%g", d->a_us, d->b_us, d->p_long);
}

/* svcdist_draw_us draws one service time in microseconds from `d`, advancing `state`. */
static inline double svcdist_draw_us(const struct svcdist *d, unsigned short state[3])
{
	switch (d->kind) {
	case SVCDIST_EXP:
		/* erand48 is in [0, 1): 1 - u is in (0, 1], so the log is finite */
		return -d->a_us * log(1.0 - erand48(state));
	case SVCDIST_BIMODAL:
		return erand48(state) < d->p_long ? d->b_us : d->a_us;
	case SVCDIST_FIXED:
	default:
		return d->a_us;
	}
}

/* svcdist_seed fills an erand48 state from a 64-bit seed and a stream number. */
static inline void svcdist_seed(unsigned short state[3], uint64_t seed, uint64_t stream)
{
	/* splitmix64, so that neighbouring seeds and streams give unrelated sequences */
	uint64_t z = seed + (stream + 1) * 0x9E3779B97F4A7C15ull;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	state[0] = (unsigned short)z;
	state[1] = (unsigned short)(z >> 16);
	state[2] = (unsigned short)(z >> 32);
}

#endif /* R2P2_TOOLS_SVCDIST_H */
