# Reference numbers for tests/test_random_regression.py (random intercepts and slopes).
# Run with Debian's r-base-core and r-cran-lme4:  Rscript tests/data/lme4_nlme/random_regression.R
# Writes tests/data/lme4_nlme/random_regression.csv (one row per number); the tests read that
# file and need no R.
suppressMessages(library(lme4))
here <- "tests/data/lme4_nlme"
sleep <- read.csv(file.path(here, "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
orth <- read.csv(file.path(here, "Orthodont.csv"))
orth$Subject <- factor(orth$Subject)
out <- list()
add <- function(model, what, value) out[[length(out) + 1]] <<- data.frame(model = model, what = what, value = value)
record <- function(name, fit) {
  add(name, "REMLcrit", REMLcrit(fit))
  vc <- as.data.frame(VarCorr(fit))
  for (i in seq_len(nrow(vc))) {
    lab <- paste(vc$grp[i], vc$var1[i], ifelse(is.na(vc$var2[i]), "", vc$var2[i]), sep = "|")
    add(name, paste0("vcov:", lab), vc$vcov[i])
  }
  fe <- summary(fit)$coefficients
  for (i in seq_len(nrow(fe))) {
    add(name, paste0("fixef:", rownames(fe)[i]), fe[i, "Estimate"])
    add(name, paste0("se:", rownames(fe)[i]), fe[i, "Std. Error"])
  }
}
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
record("sleep_corr", lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE, control = ctrl))
record("sleep_uncorr", lmer(Reaction ~ Days + (Days || Subject), sleep, REML = TRUE, control = ctrl))
record("orth_corr", lmer(distance ~ age + Sex + (age | Subject), orth, REML = TRUE, control = ctrl))
res <- do.call(rbind, out)
write.csv(res, file.path(here, "random_regression.csv"), row.names = FALSE)
cat(sprintf("R %s, lme4 %s\n", getRversion(), packageVersion("lme4")))
print(res, digits = 12)
