"""Looking back at finished work: how a picture was made (explain) and the gallery page."""
