"""Where the engine is: one photo, batch or video segment made, with its style targets and
trained network.
"""
