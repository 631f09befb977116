"""hp.optimize in ten lines: tune a toy 'training run' in-process (no sockets)."""
import p2phpo as hp

space = hp.Space(lr=hp.Float(1e-4, 1e-1, log=True), width=hp.Int(32, 1024, log=True),
                 act=hp.Choice(["relu", "gelu", "tanh"]))

def objective(trial: hp.Trial) -> float:
    p = trial.params
    for epoch in range(1, 10):  # a made-up learning curve; report it so ASHA can prune
        acc = 0.99 - 0.05 * abs(p["lr"] - 0.01) ** 0.5 - 0.02 * (p["act"] != "gelu") - 0.1 / epoch
        trial.report(acc - 1e-5 * abs(p["width"] - 256), epoch)
        if trial.should_prune():
            raise hp.TrialPruned()
    return acc - 1e-5 * abs(p["width"] - 256)

result = hp.optimize(objective, space, n_trials=60, pruner="asha", direction="maximize", seed=0)
print(f"best {result.best_value:.4f} with {result.best_params} ({len(result.trials)} trials)")
