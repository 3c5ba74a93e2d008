"""Videos in a collection: probed, cut into segments, stylized frame by frame, held steady
along the footage's optical flow, encoded, and muxed back with their sound.

The driver (:mod:`pipeline.video.driver`) probes and plans; each segment is one piece of
work for the executor (:mod:`pipeline.video.segment`), which decodes its frames from the
video's bytes, stylizes them, steadies them (:mod:`pipeline.video.steady`) and encodes
them; the driver keeps each finished segment on disk with its record and muxes the
final file (:mod:`pipeline.video.mux`) once every segment is there.
"""
