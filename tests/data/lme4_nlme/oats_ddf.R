# Reference denominator df for mvreml's res.wald(den_df="satterthwaite"/"kr") (tests/test_dendf.py).
# Run: Rscript oats_ddf.R  (R 4.2.2, nlme 3.1-162, lme4, lmerTest 3.1-3, pbkrtest 0.5.2; Debian 12)
# Writes Oats.csv (nlme::Oats: Block, Variety, nitro, yield; 72 plots, a split plot: Variety on
# the whole plots of 6 blocks, nitro on the sub-plots) and prints the F tests and df used in the tests.
suppressPackageStartupMessages({library(nlme); library(lmerTest)})
oats <- as.data.frame(nlme::Oats)
oats$Block <- as.character(oats$Block)
oats$Variety <- as.character(oats$Variety)
oats$N <- paste0("N", oats$nitro * 10)       # nitro as a factor with labels N0, N2, N4, N6
write.csv(oats[, c("Block", "Variety", "nitro", "N", "yield")], "Oats.csv", row.names = FALSE)

show <- function(tab) print(tab[, c("NumDF", "DenDF", "F value")], digits = 10)

# lme4's default tolerance leaves the components ~1e-4 off the REML maximum, which moves F and
# the df in the fifth digit: converge tightly
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# balanced: Variety is tested on the whole plots (10 df), nitro on the sub-plots (45 df)
m1 <- lmer(yield ~ N * Variety + (1 | Block / Variety), data = oats, control = tight)
cat("balanced, N * Variety\n")
show(anova(m1, type = 3, ddf = "Satterthwaite"))
show(anova(m1, type = 3, ddf = "Kenward-Roger"))

# unbalanced: plots 5, 18, 31, 44, 57, 70 removed (rows of Oats.csv), additive model, so
# that the type 3 hypotheses are the coefficients of each term (no containment)
ub <- oats[-c(5, 18, 31, 44, 57, 70), ]
m2 <- lmer(yield ~ N + Variety + (1 | Block / Variety), data = ub, control = tight)
print(REMLcrit(m2), digits = 15)
cat("unbalanced, N + Variety\n")
print(as.data.frame(VarCorr(m2))[, c("grp", "vcov")], digits = 10)
show(anova(m2, type = 3, ddf = "Satterthwaite"))
show(anova(m2, type = 3, ddf = "Kenward-Roger"))
# single-df contrasts: Variety Victory - Marvellous; N6 - N0
L1 <- matrix(0, 1, length(fixef(m2))); colnames(L1) <- names(fixef(m2))
L1[1, "VarietyVictory"] <- 1
print(contest(m2, L1, ddf = "Satterthwaite"), digits = 10)
print(contest(m2, L1, ddf = "Kenward-Roger"), digits = 10)
