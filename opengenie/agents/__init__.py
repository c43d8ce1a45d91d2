"""Agents from latent actions (Genie §3.3, App. E).

A frozen latent action model labels expert videos that carry no actions; a policy is cloned
in latent-action space; a few labelled transitions map latent actions to real ones. The CoinRun
expert whose videos are cloned is a data policy: `opengenie.data.expert`.

    square.py     a goal task in the moving-square world, its expert, its action model
    cloning.py    the CNN policy π(action | frame) and behavioural cloning
    mapping.py    the latent → real dictionary from N labelled transitions
    evaluate.py   success rates with 95 % intervals; the pipeline on the square world
    coinrun.py    the pipeline on CoinRun with a world's action model
"""
