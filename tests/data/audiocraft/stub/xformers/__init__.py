# Stand-in for the generation script only: audiocraft imports xformers at module level but uses it
# only for memory_efficient attention, which the tiny models built here (custom=True,
# memory_efficient=False) never call.
