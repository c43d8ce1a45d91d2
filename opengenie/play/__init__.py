"""Playing a world: pictures and videos of rollouts, the play web page, sessions.

    from opengenie.play import rollout_frames, action_grid, write_video
    frames = rollout_frames(world, "level.png", [0, 3, 3, 1])   # (T, H, W, 3) uint8
    write_video(frames, "rollout.gif", fps=8, scale=4)

    from opengenie.play.server import serve                    # needs the `play` extra
    serve("worlds/coinrun", port=8000, data="data/coinrun")

The Gymnasium environment lives in `opengenie.envs`.
"""

from opengenie.play.render import action_grid, gif_bytes, grid_size, rollout_frames, upscale, write_video

__all__ = ["action_grid", "gif_bytes", "grid_size", "rollout_frames", "upscale", "write_video"]
