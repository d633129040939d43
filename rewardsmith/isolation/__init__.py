"""Process isolation, below every stage that runs candidate code: the OS sandbox a worker enters
(``sandbox``) and the one way rewardsmith starts, watches and stops a child process (``child``).
The training worker's runner, the candidate checker and the Ray shard all go through these."""
